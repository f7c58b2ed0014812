"""Unit tests of the live data plane's pure parts: address mapping, discovery, relabelling,
the runtime command built from a pod. No cluster, no processes (the e2e modules here run
them for real)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from e2e.live.load import ready_endpoints
from e2e.live.network import free_subnets, live_node, loopback_address, pod_cidr
from e2e.live.prometheus import discover, sanitize, scrape_configs
from e2e.live.runtimes import runtime_command

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("pod_ip", "loopback"),
    [("10.77.0.0", "127.77.0.0"), ("10.77.3.9", "127.77.3.9"), ("10.77.254.255", "127.77.254.255")],
)
def test_loopback_twin(pod_ip: str, loopback: str) -> None:
    assert loopback_address(pod_ip) == loopback


@pytest.mark.parametrize("pod_ip", ["10.0.0.1", "10.78.0.1", "127.77.0.1", "nope"])
def test_loopback_refuses_outside_the_live_network(pod_ip: str) -> None:
    with pytest.raises(ValueError):
        loopback_address(pod_ip)


def test_free_subnets_skip_used_and_wrap() -> None:
    used = {pod_cidr(253), pod_cidr(254), pod_cidr(1)}
    assert free_subnets(used, 3, start=253) == [2, 3, 4]
    node = live_node("abc", 0, 7)
    assert node["spec"]["podCIDR"] == "10.77.7.0/24"
    assert {t["key"] for t in node["spec"]["taints"]} == {"nvidia.com/gpu", "deepseek.ai/live"}
    assert "deepseek.ai/pool" not in node["metadata"]["labels"]  # the devcluster prunes those


def _pod(name: str, ip: str, track: str = "stable") -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": "ns",
            "uid": f"uid-{name}",
            "labels": {"deepseek.ai/track": track, "deepseek.ai/revision": "r1"},
        },
        "spec": {
            "nodeName": "live-abc-0",
            "containers": [
                {
                    "name": "engine",
                    "command": ["deepseek-runtime", "serve"],
                    "args": [
                        "--model",
                        "/models/x",
                        "--host",
                        "0.0.0.0",
                        "--port",
                        "8000",
                        "--fault-injection=error-rate=0.5",
                    ],
                    "ports": [{"name": "http", "containerPort": 8000}],
                    "env": [
                        {"name": "DSR_MAX_MODEL_LEN", "value": "32768"},
                        {
                            "name": "POD_NAME",
                            "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}},
                        },
                    ],
                    "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"}},
                }
            ],
        },
        "status": {"phase": "Running", "podIP": ip},
    }


def test_runtime_command_keeps_the_pods_args_and_env() -> None:
    launch = runtime_command(_pod("p-1", "10.77.1.4"), Path("/ckpt"), Path("/venv/bin"))
    assert launch.argv[:2] == ["/venv/bin/deepseek-runtime", "serve"]
    kept = ["--port", "8000", "--fault-injection=error-rate=0.5"]
    assert launch.argv[2:] == [*kept, "--model", "/ckpt", "--host", "127.77.1.4"]
    assert (launch.host, launch.port, launch.ready_path) == ("127.77.1.4", 8000, "/ready")
    assert launch.env["POD_NAME"] == "p-1" and launch.env["DSR_MAX_MODEL_LEN"] == "32768"
    assert launch.env["OMP_NUM_THREADS"] == "1" and "DSR_NUM_BLOCKS" in launch.env


def _slice(addresses: list[tuple[str, str, bool]]) -> dict[str, Any]:
    return {
        "metadata": {"namespace": "ns", "labels": {"kubernetes.io/service-name": "api"}},
        "ports": [{"name": "http", "port": 8000, "protocol": "TCP"}],
        "endpoints": [
            {
                "addresses": [ip],
                "conditions": {"ready": ready},
                "targetRef": {"kind": "Pod", "name": pod},
            }
            for pod, ip, ready in addresses
        ],
    }


def test_ready_endpoints_map_to_loopback_and_drop_unready() -> None:
    s = _slice([("a", "10.77.1.0", True), ("b", "10.77.2.0", False)])
    assert ready_endpoints([s]) == ["127.77.1.0:8000"]


def test_discovery_and_service_monitor_relabelling() -> None:
    service = {
        "metadata": {
            "name": "api",
            "namespace": "ns",
            "labels": {"deepseek.ai/deployment": "api", "deepseek.ai/service": "api"},
        }
    }
    pods = [_pod("a", "10.77.1.0"), _pod("b", "10.77.2.0", track="canary")]
    groups = discover(
        [service], [_slice([("a", "10.77.1.0", True), ("b", "10.77.2.0", True)])], pods
    )
    assert [g["targets"] for g in groups] == [["10.77.1.0:8000"], ["10.77.2.0:8000"]]
    labels = groups[1]["labels"]
    assert labels["__meta_kubernetes_pod_label_deepseek_ai_track"] == "canary"
    assert labels["__meta_kubernetes_service_labelpresent_deepseek_ai_service"] == "true"
    assert labels["__meta_kubernetes_pod_container_name"] == "engine"
    sm = {
        "metadata": {"name": "api", "namespace": "ns"},
        "spec": {
            "selector": {
                "matchLabels": {"deepseek.ai/deployment": "api", "deepseek.ai/service": "api"}
            },
            "endpoints": [{"port": "http", "path": "/metrics", "interval": "30s"}],
            "podTargetLabels": ["deepseek.ai/track"],
        },
    }
    (job,) = scrape_configs([sm], Path("/t.json"), interval="1s")
    assert job["job_name"] == "serviceMonitor/ns/api/0" and job["scrape_interval"] == "1s"
    targets = {r.get("target_label") for r in job["relabel_configs"]}
    assert {
        "namespace",
        "service",
        "pod",
        "container",
        "job",
        "endpoint",
        "deepseek_ai_track",
    } <= targets
    assert job["relabel_configs"][-1]["replacement"] == "127.77.$1.$2:$3"
    assert sanitize("deepseek.ai/track") == "deepseek_ai_track"
