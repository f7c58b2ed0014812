"""Smoke e2e: the real scheduler places GPU pods on kwok GPU nodes; controllers work."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from e2e.conftest import Kubectl

pytestmark = pytest.mark.e2e

H100 = "NVIDIA-H100-80GB-HBM3"


def _wait_for(what: str, probe: Callable[[], Any], timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.5)


def _gpu_pod(name: str, gpus: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "nodeSelector": {"nvidia.com/gpu.product": H100},
            "tolerations": [
                {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
            ],
            "containers": [
                {
                    "name": "server",
                    "image": "example.invalid/runtime:1",
                    "resources": {"limits": {"nvidia.com/gpu": str(gpus)}},
                }
            ],
        },
    }


def _condition(pod: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for cond in pod.get("status", {}).get("conditions", []):
        if cond["type"] == kind:
            return dict(cond)
    return None


def test_eight_gpu_pod_runs_on_h100(kubectl: Kubectl, namespace: str) -> None:
    kubectl("create", "-n", namespace, "-f", "-", stdin=json.dumps(_gpu_pod("p8", 8)))

    def running() -> dict[str, Any] | None:
        pod = kubectl.json("get", "pod", "p8", "-n", namespace)
        return pod if pod.get("status", {}).get("phase") == "Running" else None

    pod = _wait_for("pod p8 Running", running)
    node = kubectl.json("get", "node", pod["spec"]["nodeName"])
    assert node["metadata"]["labels"]["nvidia.com/gpu.product"] == H100
    assert node["metadata"]["annotations"]["kwok.x-k8s.io/node"] == "fake"


def test_nine_gpu_pod_is_unschedulable(kubectl: Kubectl, namespace: str) -> None:
    kubectl("create", "-n", namespace, "-f", "-", stdin=json.dumps(_gpu_pod("p9", 9)))

    def unschedulable() -> dict[str, Any] | None:
        pod = kubectl.json("get", "pod", "p9", "-n", namespace)
        cond = _condition(pod, "PodScheduled")
        return cond if cond and cond.get("reason") == "Unschedulable" else None

    cond = _wait_for("PodScheduled=False/Unschedulable", unschedulable)
    assert cond["status"] == "False"
    assert "nvidia.com/gpu" in cond.get("message", "")
    pod = kubectl.json("get", "pod", "p9", "-n", namespace)
    assert pod["status"]["phase"] == "Pending"
    assert not pod["spec"].get("nodeName")


def test_deployment_gets_replicaset_and_pods(kubectl: Kubectl, namespace: str) -> None:
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "nodeSelector": {"deepseek.ai/pool": "cpu"},
                    "containers": [{"name": "web", "image": "example.invalid/web:1"}],
                },
            },
        },
    }
    kubectl("create", "-n", namespace, "-f", "-", stdin=json.dumps(deployment))

    def available() -> dict[str, Any] | None:
        dep = kubectl.json("get", "deployment", "web", "-n", namespace)
        return dep if dep.get("status", {}).get("availableReplicas") == 2 else None

    _wait_for("deployment web available", available)
    replicasets = kubectl.json("get", "replicasets", "-n", namespace, "-l", "app=web")["items"]
    assert len(replicasets) == 1
    assert replicasets[0]["metadata"]["ownerReferences"][0]["name"] == "web"
    pods = kubectl.json("get", "pods", "-n", namespace, "-l", "app=web")["items"]
    assert len(pods) == 2
    assert {p["status"]["phase"] for p in pods} == {"Running"}
    assert all(p["spec"]["nodeName"].startswith("cpu-") for p in pods)
