"""E2E on live runtimes: the native autoscaler scales on real load, the circuit breaker acts.

Both loops run in the real operator process against the real apiserver and read the real
Prometheus of the live data plane (:mod:`e2e.live.harness`), which scrapes real
``deepseek-runtime serve`` processes standing in for the pods.

- Native autoscaling: ``--max-num-seqs 1`` runtimes queue requests under six loopback
  clients; ``vllm:num_requests_waiting`` over its target makes the operator write the
  Deployment's scale subresource (Events with the numbers), new pods become runtimes, and
  once the load stops the replicas go back to ``minReplicas`` after the stabilization window.
- Circuit breaker: runtimes started with ``--fault-injection error-rate=0.5`` (the DSD's own
  ``engine.args``: the operator never adds the flag) answer half of ``/v1`` with 500. The
  stable track's circuit opens: the VirtualService sends its traffic to the fallback DSD,
  Degraded=True, an Event. After the cool-down it goes half-open (10 % back); the load
  here reaches pods through the Service, not an Envoy sidecar (there is no Istio data
  plane), so the faulty pods keep failing and it re-opens. Once the spec drops the flag,
  healthy pods roll in and the circuit closes: the VirtualService is back to one route.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from e2e.devcluster import ClusterInfo
from e2e.live.harness import LiveDataPlane
from e2e.operator_harness import Kube, OperatorProcess, dsd, get_dsd, wait_current, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
MODEL = "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B"


def live_dsd(live: LiveDataPlane, name: str, **spec: Any) -> dict[str, Any]:
    spec.setdefault("engine", {"kind": "native"})
    spec.setdefault("monitoring", {"prometheusAddress": live.prometheus.address})
    return dsd(name, MODEL, placement=live.placement, **spec)


def events(kube: Kube, namespace: str, name: str) -> list[dict[str, Any]]:
    items = kube.json(
        "get", "events", "-n", namespace, "--field-selector", f"involvedObject.name={name}"
    )["items"]
    return list(items)


def reasons(kube: Kube, namespace: str, name: str) -> list[str]:
    return [e["reason"] for e in events(kube, namespace, name)]


def scale(kube: Kube, namespace: str, name: str) -> int:
    return int(kube.json("get", "deployment", name, "-n", namespace)["spec"]["replicas"])


def test_native_autoscaler_scales_up_under_load_and_back_down(
    kube: Kube, operator: OperatorProcess, namespace: str, live: LiveDataPlane
) -> None:
    live.watch(namespace)
    autoscaling = {
        "provider": "native",
        "minReplicas": 1,
        "maxReplicas": 3,
        "metrics": [{"type": "QueueDepth", "target": 1}],
        "scaleDownStabilizationSeconds": 15,
        "native": {"interval": "2s", "stableWindow": "10s", "panicWindow": "4s"},
    }
    engine = {"kind": "native", "args": ["--max-num-seqs", "1"]}
    kube.apply(
        live_dsd(live, "nat", replicas=None, autoscaling=autoscaling, engine=engine), namespace
    )
    wait_current(kube, namespace, "nat")
    live.wait_runtimes(namespace, 1, timeout=120)
    assert kube.json("get", "hpa", "-n", namespace)["items"] == []  # no adapter involved
    wait_for(
        "a first decision",
        lambda: (get_dsd(kube, namespace, "nat")["status"]).get("autoscaler"),
        30,
    )
    assert scale(kube, namespace, "nat") == 1

    sel = f'namespace="{namespace}",service="nat"'
    with live.load(namespace, "nat", MODEL, concurrency=6, max_tokens=64, duration=240):
        live.wait_value(f"sum(vllm:num_requests_waiting{{{sel}}})", lambda v: v >= 2, 60)
        wait_for("scale-up", lambda: scale(kube, namespace, "nat") >= 2, 60)
        live.wait_runtimes(namespace, scale(kube, namespace, "nat"), timeout=120)
        st = get_dsd(kube, namespace, "nat")["status"]
        assert st["autoscaler"]["metric"] == "QueueDepth"
        assert st["autoscaler"]["desiredReplicas"] >= 2
        active = next(c for c in st["conditions"] if c["type"] == "ScalingActive")
        assert (active["status"], active["reason"]) == ("True", "ValidMetrics")
        scaled = [e for e in events(kube, namespace, "nat") if e["reason"] == "Scaled"]
        assert scaled and "1 -> " in scaled[0]["message"]
        assert "QueueDepth wants" in scaled[0]["message"]  # the numbers behind it
    peak = scale(kube, namespace, "nat")
    assert 2 <= peak <= 3
    wait_for("scale-down to minReplicas", lambda: scale(kube, namespace, "nat") == 1, 150)
    downs = [e["message"] for e in events(kube, namespace, "nat") if e["reason"] == "Scaled"]
    assert any(m.startswith("ScaleDown") for m in downs), downs
    wait_for("one runtime left", lambda: len(live.runtimes(namespace)) == 1, 60)
    live.unwatch(namespace)


def _route(kube: Kube, namespace: str, name: str) -> list[tuple[str, int | None]]:
    vs = kube.json("get", "virtualservices.networking.istio.io", name, "-n", namespace)
    return [
        (r["destination"]["host"].split(".")[0], r.get("weight"))
        for r in vs["spec"]["http"][0]["route"]
    ]


def _circuit(kube: Kube, namespace: str, name: str) -> str | None:
    st = get_dsd(kube, namespace, name).get("status") or {}
    tracks = (st.get("circuit") or {}).get("tracks") or []
    return next((t["state"] for t in tracks if t["track"] == "stable"), None)


def _degraded(kube: Kube, namespace: str, name: str) -> tuple[str, str]:
    st = get_dsd(kube, namespace, name)["status"]
    c = next(c for c in st["conditions"] if c["type"] == "Degraded")
    return c["status"], c["reason"]


def test_injected_errors_open_the_circuit_and_move_traffic_then_it_closes(
    kube: Kube, operator: OperatorProcess, namespace: str, live: LiveDataPlane
) -> None:
    live.watch(namespace)
    breaker = {
        "interval": "2s",
        "window": "10s",
        "coolDown": "8s",
        "closeAfter": "6s",
        "halfOpenPercent": 10,
        "fallback": "cbfb",
    }
    faulty = {"kind": "native", "args": ["--fault-injection", "error-rate=0.5"]}
    kube.apply(live_dsd(live, "cbfb", replicas=1), namespace)
    kube.apply(
        live_dsd(
            live,
            "cb",
            replicas=1,
            engine=faulty,
            traffic={"istio": {}},
            resilience={"circuitBreaker": breaker},
        ),
        namespace,
    )
    wait_current(kube, namespace, "cb")
    live.wait_runtimes(namespace, 2, timeout=120)
    assert _route(kube, namespace, "cb") == [("cb", None)]
    wait_for("the breaker evaluates", lambda: _circuit(kube, namespace, "cb") == "Closed", 30)

    with live.load(namespace, "cb", MODEL, concurrency=3, max_tokens=2, duration=300) as load:
        wait_for("circuit open", lambda: _circuit(kube, namespace, "cb") == "Open", 60)
        wait_for(
            "traffic moved to the fallback",
            lambda: _route(kube, namespace, "cb") == [("cb", 0), ("cbfb", 100)],
            30,
        )
        assert _degraded(kube, namespace, "cb") == ("True", "CircuitOpen")
        opened = [e for e in events(kube, namespace, "cb") if e["reason"] == "CircuitOpened"]
        assert opened and opened[0]["type"] == "Warning"
        assert "above 5%" in opened[0]["message"] and "fallback 100%" in opened[0]["message"]
        rule = kube.json("get", "destinationrules.networking.istio.io", "cb", "-n", namespace)
        assert rule["spec"]["trafficPolicy"]["outlierDetection"]  # pod ejection stays
        wait_for(
            "half-open",
            lambda: "CircuitHalfOpen" in reasons(kube, namespace, "cb"),
            40,
        )
        half = next(e for e in events(kube, namespace, "cb") if e["reason"] == "CircuitHalfOpen")
        assert "traffic now: stable 10%, fallback 90%" in half["message"]
        wait_for(
            "re-opened (the faulty pods still fail)",
            lambda: "CircuitReopened" in reasons(kube, namespace, "cb"),
            40,
        )
        healthy = {"kind": "native", "args": []}
        patch = {"spec": {"engine": healthy}}
        kube("patch", "dsd", "cb", "-n", namespace, "--type=merge", "-p", json.dumps(patch))
        wait_for("circuit closed", lambda: _circuit(kube, namespace, "cb") == "Closed", 150)
        assert "500" in load.stats.statuses  # the injected errors were real responses
    assert _route(kube, namespace, "cb") == [("cb", None)]
    wait_for(
        "Degraded clears",
        lambda: _degraded(kube, namespace, "cb") == ("False", "AsExpected"),
        30,
    )
    got = reasons(kube, namespace, "cb")
    for reason in ("CircuitOpened", "CircuitHalfOpen", "CircuitReopened", "CircuitClosed"):
        assert reason in got, got
    live.unwatch(namespace)


def test_unreachable_prometheus_is_a_condition_and_an_event_not_a_silent_no_op(
    kube: Kube, operator: OperatorProcess, namespace: str, live: LiveDataPlane
) -> None:
    autoscaling = {
        "provider": "native",
        "minReplicas": 1,
        "maxReplicas": 3,
        "native": {"interval": "2s"},
    }
    nowhere = {"prometheusAddress": "http://127.0.0.1:9"}  # discard port: refused
    kube.apply(
        live_dsd(live, "blind", replicas=None, autoscaling=autoscaling, monitoring=nowhere),
        namespace,
    )

    def inactive() -> dict[str, Any] | None:
        st = get_dsd(kube, namespace, "blind").get("status") or {}
        c = next((c for c in st.get("conditions") or [] if c["type"] == "ScalingActive"), None)
        return c if c and c["status"] == "False" else None

    cond = wait_for("ScalingActive=False", inactive, 60)
    assert cond["reason"] == "PrometheusUnreachable"
    assert "http://127.0.0.1:9" in cond["message"]
    warned = [e for e in events(kube, namespace, "blind") if e["reason"] == "PrometheusUnreachable"]
    assert warned and warned[0]["type"] == "Warning"
    assert scale(kube, namespace, "blind") == 1  # nothing scaled on no data


def test_unschedulable_pods_stop_further_scale_up_with_an_event(
    *,
    kube: Kube,
    operator: OperatorProcess,
    namespace: str,
    cluster: ClusterInfo,
    tiny_model: Path,
    tmp_path: Path,
) -> None:
    # a pool of one node with two GPUs: the third replica cannot be scheduled
    with LiveDataPlane(
        cluster.kubeconfig, tmp_path / "small", tiny_model, nodes=1, gpus_per_node=2
    ) as small:
        small.watch(namespace)
        autoscaling = {
            "provider": "native",
            "minReplicas": 3,
            "maxReplicas": 6,
            "metrics": [{"type": "QueueDepth", "target": 0.1}],
            "native": {"interval": "2s", "stableWindow": "6s", "panicWindow": "3s"},
        }
        engine = {"kind": "native", "args": ["--max-num-seqs", "1"]}
        kube.apply(
            live_dsd(small, "full", replicas=None, autoscaling=autoscaling, engine=engine),
            namespace,
        )
        wait_for("minReplicas written", lambda: scale(kube, namespace, "full") == 3, 90)
        small.wait_runtimes(namespace, 2, timeout=120)
        with small.load(namespace, "full", MODEL, concurrency=4, max_tokens=32, duration=120):
            wait_for(
                "ScaleUpBlocked",
                lambda: "ScaleUpBlocked" in reasons(kube, namespace, "full"),
                90,
            )
        blocked = next(
            e for e in events(kube, namespace, "full") if e["reason"] == "ScaleUpBlocked"
        )
        assert blocked["type"] == "Warning"
        assert "1 pod(s) cannot be scheduled (no free GPUs)" in blocked["message"]
        assert scale(kube, namespace, "full") == 3  # held: nothing more was added
        st = get_dsd(kube, namespace, "full")["status"]["autoscaler"]
        assert st["reason"] in {"NoCapacity", "Panic", "Hold"}
        small.unwatch(namespace)
        kube("delete", "dsd", "full", "-n", namespace, "--wait=true", check=False)


def test_a_spec_change_keeps_the_replicas_the_autoscaler_wrote(
    kube: Kube, operator: OperatorProcess, namespace: str, live: LiveDataPlane
) -> None:
    # no runtimes (namespace not watched): no metric data, so the autoscaler only brings
    # the workload up to minReplicas through the scale subresource
    autoscaling = {"provider": "native", "minReplicas": 2, "native": {"interval": "2s"}}
    kube.apply(live_dsd(live, "keep", replicas=None, autoscaling=autoscaling), namespace)
    wait_for("minReplicas written", lambda: scale(kube, namespace, "keep") == 2, 60)
    generation = kube.json("get", "deployment", "keep", "-n", namespace)["metadata"]["generation"]
    patch = {"spec": {"engine": {"kind": "native", "args": ["--max-num-seqs", "4"]}}}
    kube("patch", "dsd", "keep", "-n", namespace, "--type=merge", "-p", json.dumps(patch))

    def rolled() -> bool:
        d = kube.json("get", "deployment", "keep", "-n", namespace)
        args = d["spec"]["template"]["spec"]["containers"][0].get("args") or []
        return d["metadata"]["generation"] > generation and "--max-num-seqs" in args

    wait_for("the new pod template applied", rolled, 60)
    assert scale(kube, namespace, "keep") == 2  # server-side apply left replicas alone
