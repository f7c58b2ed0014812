"""E2E: ``autoscaling.provider: keda`` really scales on live queue depth, up and back down.

KEDA's operator and metrics adapter (built from the pinned module, :mod:`e2e.live.keda`)
run against the local control plane. The operator renders a ScaledObject whose Prometheus
trigger is ``sum(vllm:num_requests_waiting{namespace,service})`` with target 1 per replica;
KEDA turns it into an HPA on ``external.metrics.k8s.io``, and the real
kube-controller-manager's HPA controller scales the Deployment. Runtimes with
``--max-num-seqs 1`` under 8 concurrent loopback clients queue requests, so the DSD grows
from 2 replicas; when the load stops it shrinks back to 2 after the (short) stabilization
window. The new replicas' runtimes start and take traffic.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from e2e.devcluster import ClusterInfo
from e2e.live.harness import LiveDataPlane
from e2e.live.keda import Keda
from e2e.operator_harness import Kube, OperatorProcess, dsd, wait_current, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
MODEL = "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B"


@pytest.fixture(scope="module")
def keda(cluster: ClusterInfo, kube: Kube) -> Iterator[Keda]:
    workdir = Path(tempfile.mkdtemp(prefix="dsk-keda-"))
    with Keda(cluster.kubeconfig, workdir, kube) as k:
        yield k
    print(f"KEDA logs: {workdir}")


def keda_dsd(live: LiveDataPlane, name: str, window: int = 10) -> dict[str, Any]:
    return dsd(
        name,
        MODEL,
        replicas=None,
        engine={"kind": "native", "args": ["--max-num-seqs", "1"]},
        placement=live.placement,
        autoscaling={
            "provider": "keda",
            "minReplicas": 2,
            "maxReplicas": 4,
            "metrics": [{"type": "QueueDepth", "target": 1}],
            "scaleDownStabilizationSeconds": window,
        },
        monitoring={"prometheusAddress": live.prometheus.address},
    )


def replicas(kube: Kube, namespace: str, name: str) -> int:
    dep = kube.json("get", "deployment", name, "-n", namespace)
    return int(dep["spec"].get("replicas") or 0)


def test_keda_scales_up_on_queue_depth_and_back_down(
    kube: Kube, operator: OperatorProcess, namespace: str, live: LiveDataPlane, keda: Keda
) -> None:
    name = "scaled"
    live.watch(namespace)
    kube.apply(keda_dsd(live, name), namespace)
    wait_current(kube, namespace, name, timeout=180)
    wait_for(
        "KEDA's HPA",
        lambda: (
            kube("get", "hpa", f"keda-hpa-{name}", "-n", namespace, check=False).returncode == 0
        ),
        60,
    )
    wait_for("2 replicas", lambda: replicas(kube, namespace, name) == 2, 90)
    live.wait_runtimes(namespace, 2, timeout=180)

    waiting = f'sum(vllm:num_requests_waiting{{namespace="{namespace}",service="{name}"}})'
    peak = 0
    with live.load(namespace, name, MODEL, concurrency=8, max_tokens=24, duration=400) as load:
        live.wait_value(waiting, lambda v: v >= 3, timeout=90)

        def grown() -> bool:
            nonlocal peak
            peak = max(peak, replicas(kube, namespace, name))
            return peak > 2

        wait_for("KEDA/HPA scale-up", grown, 180, interval=2)
        live.wait_runtimes(namespace, peak, timeout=180)
        wait_for("traffic on the new replicas", lambda: len(load.stats.by_endpoint) > 2, 60)
    assert peak <= 4
    hpa = kube.json("get", "hpa", f"keda-hpa-{name}", "-n", namespace)
    metric = hpa["spec"]["metrics"][0]
    assert metric["type"] == "External", metric

    wait_for("scale back down to 2", lambda: replicas(kube, namespace, name) == 2, 240, interval=2)
    wait_for("2 runtimes left", lambda: len(live.runtimes(namespace)) == 2, 90)
    live.unwatch(namespace)
