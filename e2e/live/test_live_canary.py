"""E2E: canary analysis on live runtime metrics: a healthy canary is promoted, an erroring
one and a slow one are rolled back.

Three DSDs on the live data plane, one runtime each, under loopback load through their
Services. A spec change makes each roll out a canary revision: ``canary-good`` changes a
harmless engine flag, ``canary-bad`` adds the runtime's ``--fault-injection
error-rate=0.6`` (the revision's runtimes really answer 60 % of ``/v1`` requests with 500),
``canary-slow`` adds ``--fault-injection token-delay-ms=1500`` (every output update of the
revision's runtimes arrives 1.5 s late, so its TTFT and request latency really grow) and
analyses against 1 s / 2 s limits.
The analysis uses the three built-in queries (``error-rate``, ``latency-p95``,
``ttft-p95``) over the canary pods; their values in ``status.canary.lastAnalysis`` are the
series the runtimes produced and Prometheus scraped (checked against Prometheus directly).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from deepseek_operator.api import DeepSeekDeployment
from deepseek_operator.render import canary_pod_regex
from e2e.live.harness import LiveDataPlane
from e2e.operator_harness import Kube, OperatorProcess, dsd, get_dsd, wait_current, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
MODEL = "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B"
BUILTINS = ("error-rate", "latency-p95", "ttft-p95")


def _canary_dsd(live: LiveDataPlane, name: str, latency_max: float = 60) -> dict[str, Any]:
    rollout = {
        "strategy": "Canary",
        "canary": {
            "steps": [{"weight": 50, "pause": "20s"}],
            "analysis": {
                "interval": "10s",
                # runs before the new runtime's first scrape count as failures ("no data")
                "failureLimit": 5,
                "metrics": [
                    {"name": "error-rate", "builtin": "error-rate", "max": 5},
                    # generous by default: the point is real series; CI machines are slow
                    {"name": "latency-p95", "builtin": "latency-p95", "max": 2 * latency_max},
                    {"name": "ttft-p95", "builtin": "ttft-p95", "max": latency_max},
                ],
            },
        },
    }
    return dsd(
        name,
        MODEL,
        replicas=1,
        engine={"kind": "native"},
        placement=live.placement,
        rollout=rollout,
        traffic={"istio": {}},
        monitoring={"prometheusAddress": live.prometheus.address},
    )


def _canary(kube: Kube, namespace: str, name: str) -> dict[str, Any]:
    return dict(get_dsd(kube, namespace, name).get("status", {}).get("canary") or {})


def _settled(kube: Kube, namespace: str, name: str) -> dict[str, Any] | None:
    canary = _canary(kube, namespace, name)
    return canary if canary.get("phase") in {"Succeeded", "Failed"} else None


def _metrics(canary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["name"]: m for m in canary["lastAnalysis"]["metrics"]}


def test_live_canary_promotes_healthy_and_rolls_back_erroring_and_slow_revisions(
    kube: Kube, operator: OperatorProcess, namespace: str, live: LiveDataPlane
) -> None:
    good, bad, slow = "canary-good", "canary-bad", "canary-slow"
    live.watch(namespace)
    for name in (good, bad):
        kube.apply(_canary_dsd(live, name), namespace)
    kube.apply(_canary_dsd(live, slow, latency_max=1.0), namespace)
    for name in (good, bad, slow):
        wait_current(kube, namespace, name)
    live.wait_runtimes(namespace, 3, timeout=180)
    loads = [live.load(namespace, n, MODEL, concurrency=2, max_tokens=4) for n in (good, bad, slow)]
    try:
        patches = {
            good: {"spec": {"engine": {"kind": "native", "args": ["--max-waiting", "500"]}}},
            bad: {
                "spec": {
                    "engine": {
                        "kind": "native",
                        "args": ["--fault-injection", "error-rate=0.6,seed=7"],
                    }
                }
            },
            slow: {
                "spec": {
                    "engine": {
                        "kind": "native",
                        "args": ["--fault-injection", "token-delay-ms=1500"],
                    }
                }
            },
        }
        for name, patch in patches.items():
            kube("patch", "dsd", name, "-n", namespace, "--type=merge", "-p", json.dumps(patch))
        live.wait_runtimes(namespace, 3, timeout=180, track="canary")
        failed = wait_for("bad canary rolled back", lambda: _settled(kube, namespace, bad), 300)
        slowed = wait_for("slow canary rolled back", lambda: _settled(kube, namespace, slow), 300)
        done = wait_for("good canary settled", lambda: _settled(kube, namespace, good), 300)
    finally:
        stats = [load.stop() for load in loads]

    assert done["phase"] == "Succeeded", done
    results = _metrics(done)
    assert set(results) == set(BUILTINS) and all(r["passed"] for r in results.values()), results
    assert results["error-rate"]["value"] <= 5
    assert results["latency-p95"]["value"] > 0 and results["ttft-p95"]["value"] > 0

    assert failed["phase"] == "Failed" and failed["weight"] == 0, failed
    bad_results = _metrics(failed)
    assert bad_results["error-rate"]["value"] > 5, bad_results
    assert "above max" in bad_results["error-rate"]["message"]

    assert slowed["phase"] == "Failed" and slowed["weight"] == 0, slowed
    slow_results = _metrics(slowed)
    assert slow_results["error-rate"]["passed"], slow_results  # slow, not failing
    assert slow_results["ttft-p95"]["value"] > 1.0, slow_results
    assert not slow_results["ttft-p95"]["passed"] or not slow_results["latency-p95"]["passed"]

    # The analysis read what the runtimes produced: the bad canary pods' 500s are in
    # Prometheus, and the load saw them too.
    obj = get_dsd(kube, namespace, bad)
    bad_obj = DeepSeekDeployment.model_validate(
        {k: obj[k] for k in ("apiVersion", "kind", "metadata", "spec")}
    )
    pods = f'namespace="{namespace}",pod=~"{canary_pod_regex(bad_obj)}"'
    # the rolled-back pods are gone, their series stale: look back over the test's span
    errors = live.prometheus.value(
        f'sum(max_over_time(http_requests_total{{{pods},status="500"}}[10m]))'
    )
    assert errors is not None and errors > 0
    assert stats[1].statuses["500"] > 0 and stats[0].statuses["500"] == 0, stats
    wait_for(
        "bad canary's runtimes stopped",
        lambda: not [r for r in live.runtimes(namespace) if r.track == "canary"],
        120,
    )
    live.unwatch(namespace)
