"""E2E: the live data plane itself: pods -> runtimes, Service -> endpoints, Prometheus labels.

A DeepSeekDeployment with two replicas lands on the live nodes; the harness runs one real
runtime per pod; load through the Service's EndpointSlices reaches both pods; Prometheus
discovers them through the apiserver from the operator's ServiceMonitor and labels the
series ``namespace``, ``service``, ``pod`` and the pod target labels. Scaling the DSD to one
replica stops one runtime.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from e2e.live.harness import LiveDataPlane
from e2e.live.network import loopback_address
from e2e.operator_harness import Kube, OperatorProcess, dsd, wait_current, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
MODEL = "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B"


def live_dsd(live: LiveDataPlane, name: str, **spec: Any) -> dict[str, Any]:
    """A DSD served by the live data plane (native engine, live nodes, live Prometheus)."""
    spec.setdefault("engine", {"kind": "native"})
    spec.setdefault("monitoring", {"prometheusAddress": live.prometheus.address})
    return dsd(name, MODEL, placement=live.placement, **spec)


def test_pods_become_runtimes_scraped_with_service_monitor_labels(
    kube: Kube, operator: OperatorProcess, namespace: str, live: LiveDataPlane
) -> None:
    live.watch(namespace)
    kube.apply(live_dsd(live, "live", replicas=2), namespace)
    wait_current(kube, namespace, "live")
    runtimes = live.wait_runtimes(namespace, 2, timeout=120)
    pods = {p["metadata"]["name"]: p for p in kube.json("get", "pods", "-n", namespace)["items"]}
    assert {r.pod for r in runtimes} == set(pods)
    for r in runtimes:
        assert r.launch.host == loopback_address(pods[r.pod]["status"]["podIP"])

    with live.load(namespace, "live", MODEL, concurrency=2, max_tokens=4) as load:
        assert sorted(load.endpoints()) == sorted(
            f"{loopback_address(p['status']['podIP'])}:8000" for p in pods.values()
        )
        wait_for("both pods answered", lambda: len(load.stats.by_endpoint) == 2, 60)
        sel = f'namespace="{namespace}",service="live"'
        live.wait_value(
            f"count(sum by (pod) (vllm:request_success_total{{{sel}}}) > 0)",
            lambda v: v == 2,
            timeout=60,
        )
    assert set(load.stats.statuses) == {"200"}, load.stats.statuses
    assert len(load.stats.by_endpoint) == 2

    series = live.prometheus.query(f"vllm:num_requests_waiting{{{sel}}}")
    labels = [s["metric"] for s in series]
    assert {m["pod"] for m in labels} == set(pods)
    for m in labels:
        assert m["deepseek_ai_track"] == "stable" and m["deepseek_ai_revision"]
        assert m["job"] == "live" and m["endpoint"] == "http" and m["container"]

    kube(
        "patch",
        "dsd",
        "live",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"replicas": 1}}),
    )
    wait_for("one runtime left", lambda: len(live.runtimes(namespace)) == 1, 60)
    live.unwatch(namespace)
