"""The circuit breaker acts: VirtualService weights move away from an open track (to the
healthy track or the fallback DSD), a half-open track gets a share back, Degraded says
so, and routing-only fields do not change the spec revision."""

from __future__ import annotations

import copy
from typing import Any, cast

from dsd_factory import dsd
from test_controller_reconcile import NODES, FakeKube, _dsd

from deepseek_operator.api.status import CircuitStatus, TrackCircuit
from deepseek_operator.controllers import reconcile as rc
from deepseek_operator.controllers.kube import Kube
from deepseek_operator.controllers.status import PlanOutcome, WorkloadState, compute_status
from deepseek_operator.render import spec_revision
from deepseek_operator.render.istio import route_weights, virtual_service

ISTIO: dict[str, Any] = {"traffic": {"istio": {}}}
CANARY: dict[str, Any] = {**ISTIO, "rollout": {"strategy": "Canary"}}
FALLBACK: dict[str, Any] = {
    **ISTIO,
    "resilience": {"circuitBreaker": {"fallback": "r1-distill", "halfOpenPercent": 10}},
}


def circuit(**states: str) -> CircuitStatus:
    return CircuitStatus(
        tracks=[TrackCircuit(track=t, state=s, message="error rate 30%") for t, s in states.items()]  # type: ignore[arg-type]
    )


def test_closed_circuit_changes_nothing() -> None:
    d = dsd(**CANARY)
    assert route_weights(d, 25, circuit(stable="Closed", canary="Closed")) == {
        "stable": 75,
        "canary": 25,
    }
    assert virtual_service(d, 25, circuit()) == virtual_service(d, 25)


def test_open_canary_sends_its_share_to_stable() -> None:
    d = dsd(**CANARY)
    assert route_weights(d, 25, circuit(canary="Open")) == {"stable": 100, "canary": 0}
    route = virtual_service(d, 25, circuit(canary="Open"))["spec"]["http"][0]["route"]  # type: ignore[index]
    assert [(r["destination"]["subset"], r["weight"]) for r in route] == [
        ("stable", 100),
        ("canary", 0),
    ]


def test_open_stable_under_a_canary_moves_to_the_canary_track() -> None:
    assert route_weights(dsd(**CANARY), 10, circuit(stable="Open")) == {
        "stable": 0,
        "canary": 100,
    }


def test_both_open_without_fallback_keeps_traffic() -> None:
    d = dsd(**CANARY)
    assert route_weights(d, 10, circuit(stable="Open", canary="Open")) == {
        "stable": 90,
        "canary": 10,
    }


def test_open_stable_goes_to_the_fallback_service() -> None:
    d = dsd(**FALLBACK)
    assert route_weights(d, 0, circuit(stable="Open")) == {"stable": 0, "fallback": 100}
    route = virtual_service(d, 0, circuit(stable="Open"))["spec"]["http"][0]["route"]  # type: ignore[index]
    assert route == [
        {
            "destination": {"host": "r1.serving.svc.cluster.local", "port": {"number": 80}},
            "weight": 0,
        },
        {
            "destination": {"host": "r1-distill.serving.svc.cluster.local", "port": {"number": 80}},
            "weight": 100,
        },
    ]


def test_half_open_returns_a_small_share() -> None:
    d = dsd(**FALLBACK)
    assert route_weights(d, 0, circuit(stable="HalfOpen")) == {"stable": 10, "fallback": 90}
    canary = dsd(**CANARY)  # default halfOpenPercent 10, canary normally has 25
    assert route_weights(canary, 25, circuit(canary="HalfOpen")) == {"stable": 90, "canary": 10}
    assert route_weights(canary, 5, circuit(canary="HalfOpen")) == {"stable": 95, "canary": 5}


def test_open_without_canary_or_fallback_has_nowhere_to_go() -> None:
    d = dsd(**ISTIO)
    assert route_weights(d, 0, circuit(stable="Open")) == {"stable": 100}
    assert virtual_service(d, 0, circuit(stable="Open")) == virtual_service(d)


def test_routing_fields_leave_the_revision_alone() -> None:
    assert spec_revision(dsd(**FALLBACK)) == spec_revision(dsd(**ISTIO))
    probes = {**ISTIO, "resilience": {"health": {"periodSeconds": 10}}}
    assert spec_revision(dsd(**probes)) != spec_revision(dsd(**ISTIO))


def _degraded(tracks: CircuitStatus | None) -> tuple[str, str, str]:
    ok = PlanOutcome(True, {"reasons": ["fits"]}, "Planned", "fits")
    w = WorkloadState(
        kind="Deployment", name="r1", desired=2, current=2, ready=2, updated=2, observed=True
    )
    current = compute_status(None, 1, ok, [w], now="2026-01-01T00:00:00Z")
    current.circuit = tracks
    out = compute_status(current, 1, ok, [w], now="2026-01-01T00:01:00Z")
    cond = out.get_condition("Degraded")
    assert cond is not None
    return cond.status, cond.reason, out.phase or ""


def test_degraded_while_a_circuit_is_not_closed() -> None:
    assert _degraded(None) == ("False", "AsExpected", "Ready")
    assert _degraded(circuit(stable="Closed")) == ("False", "AsExpected", "Ready")
    assert _degraded(circuit(stable="Open")) == ("True", "CircuitOpen", "Degraded")
    assert _degraded(circuit(canary="HalfOpen")) == ("True", "CircuitHalfOpen", "Degraded")


def test_a_resumed_pass_keeps_the_recorded_circuit_routing() -> None:
    """A restarted operator's resume pass renders from ``status.circuit``: traffic stays
    on the fallback instead of snapping back to the failing track."""
    fake = FakeKube()
    body = _dsd(fake, ["H200"])
    body["spec"]["traffic"] = {"istio": {}}
    body["spec"]["resilience"] = {"circuitBreaker": {"fallback": "r1-distill"}}
    fake.objects[("DeepSeekDeployment", "ns", "r1")] = copy.deepcopy(body)
    rc.reconcile(body, NODES, cast(Kube, fake), lambda _: None)
    stored = fake.objects[("DeepSeekDeployment", "ns", "r1")]
    stored["status"]["circuit"] = circuit(stable="Open").to_k8s()
    rc.reconcile(copy.deepcopy(stored), NODES, cast(Kube, fake), lambda _: None)  # resume
    route = fake.objects[("VirtualService", "ns", "r1")]["spec"]["http"][0]["route"]
    assert [(r["destination"]["host"].split(".")[0], r["weight"]) for r in route] == [
        ("r1", 0),
        ("r1-distill", 100),
    ]
    degraded = next(c for c in stored["status"]["conditions"] if c["type"] == "Degraded")
    assert degraded["reason"] == "CircuitOpen"
