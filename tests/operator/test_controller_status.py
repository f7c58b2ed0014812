"""Unit tests of status and condition computation (kstatus-compatible)."""

from __future__ import annotations

from typing import Any

import pytest

from deepseek_operator.api.status import CanaryStatus
from deepseek_operator.controllers.status import (
    PlanOutcome,
    WorkloadState,
    compute_status,
    parse_status,
    status_patch,
    workload_state,
)

pytestmark = pytest.mark.unit
T0, T1 = "2026-01-01T00:00:00Z", "2026-01-01T00:01:00Z"
# a plan as Plan.to_status() gives it (which always lists its reasons)
OK = PlanOutcome(
    True,
    {"gpuProduct": "H200", "tensor": 8, "reasons": ["fits one node"]},
    "Planned",
    "fits one node",
)
BAD = PlanOutcome(False, None, "PlanFailed", "tensor 3 does not divide 128 heads; use 1, 2, 4 or 8")


def _status(current: dict[str, Any] | None, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """compute_status over the Kubernetes JSON the controller reads and writes."""
    canary = kwargs.pop("canary", None)
    typed = compute_status(
        parse_status(current) if current is not None else None,
        *args,
        canary=CanaryStatus.model_validate(canary) if canary is not None else None,
        **kwargs,
    )
    return typed.to_k8s()


def _patch(current: dict[str, Any] | None, desired: dict[str, Any]) -> dict[str, Any]:
    return status_patch(current, parse_status(desired))


def _w(ready: int, desired: int = 2, updated: int | None = None) -> WorkloadState:
    return WorkloadState(
        kind="Deployment",
        name="r1",
        desired=desired,
        current=desired,
        ready=ready,
        updated=desired if updated is None else updated,
        observed=True,
        selector="app=r1",
    )


def _cond(status: dict, ctype: str) -> dict:
    return next(c for c in status["conditions"] if c["type"] == ctype)


def test_ready_when_every_replica_is_ready() -> None:
    st = _status(None, 3, OK, [_w(2)], now=T0)
    assert st["observedGeneration"] == 3
    assert st["phase"] == "Ready"
    assert _cond(st, "Ready")["status"] == "True"
    assert _cond(st, "Available")["status"] == "True"
    assert _cond(st, "Progressing")["status"] == "False"
    assert _cond(st, "Degraded")["status"] == "False"
    assert st["readyReplicas"] == 2 and st["replicas"] == 2
    assert st["selector"] == "app=r1" and st["plan"] == OK.plan
    assert [c["type"] for c in st["conditions"]] == [
        "Planned",
        "Progressing",
        "Reconciling",
        "Available",
        "Degraded",
        "Ready",
        "Stalled",
    ]


def test_progressing_while_replicas_start() -> None:
    st = _status(None, 1, OK, [_w(1)], now=T0)
    assert st["phase"] == "Progressing"
    assert _cond(st, "Ready")["status"] == "False"
    assert _cond(st, "Ready")["reason"] == "WaitingForReplicas"
    assert _cond(st, "Progressing")["status"] == "True"


def test_plan_failure_without_children_is_failed_with_the_message() -> None:
    st = _status(None, 1, BAD, [], now=T0)
    assert st["phase"] == "Failed"
    planned = _cond(st, "Planned")
    assert planned["status"] == "False" and planned["reason"] == "PlanFailed"
    assert "use 1, 2, 4 or 8" in planned["message"]
    assert _cond(st, "Ready")["message"] == planned["message"]
    assert _cond(st, "Stalled")["status"] == "True"
    assert "plan" not in st


def test_plan_failure_on_update_keeps_serving_and_is_degraded() -> None:
    good = _status(None, 1, OK, [_w(2)], now=T0)
    st = _status(good, 2, BAD, [_w(2)], now=T1)
    assert st["phase"] == "Degraded"
    assert _cond(st, "Degraded")["reason"] == "PlanFailed"
    assert st["plan"] == OK.plan  # the plan that still serves


def test_a_refused_child_is_degraded_and_not_ready_with_the_apiserver_message() -> None:
    refused = "the apiserver refused a child object: POST deployments: 403 exceeded quota"
    st = _status(None, 1, OK, [], now=T0, apply_error=refused)
    assert st["phase"] == "Degraded"
    assert _cond(st, "Planned")["status"] == "True"  # the plan is fine; applying it is not
    for ctype in ("Degraded", "Ready"):
        cond = _cond(st, ctype)
        assert cond["reason"] == "ApplyFailed" and cond["message"] == refused
    assert _cond(st, "Degraded")["status"] == "True" and _cond(st, "Ready")["status"] == "False"
    healed = _status(st, 1, OK, [_w(2)], now=T1)  # the next pass applies
    assert healed["phase"] == "Ready" and _cond(healed, "Degraded")["status"] == "False"


def test_unchanged_inputs_give_an_empty_patch_and_keep_transition_times() -> None:
    first = _status(None, 1, OK, [_w(2)], now=T0)
    again = _status(first, 1, OK, [_w(2)], now=T1)
    assert _patch(first, again) == {}
    assert all(c["lastTransitionTime"] == T0 for c in again["conditions"])


def test_workload_event_keeps_the_recorded_plan_and_generation() -> None:
    first = _status(None, 4, OK, [_w(0)], now=T0)
    later = _status(first, 0, None, [_w(2)], now=T1)
    assert later["observedGeneration"] == 4
    assert _cond(later, "Planned") == _cond(first, "Planned")
    assert later["phase"] == "Ready"
    assert _cond(later, "Ready")["lastTransitionTime"] == T1
    assert set(_patch(first, later)) == {"conditions", "readyReplicas", "phase"}


def test_losing_all_replicas_is_degraded() -> None:
    up = _status(None, 1, OK, [_w(2)], now=T0)
    down = _status(up, 0, None, [_w(0)], now=T1)
    assert down["phase"] == "Degraded"
    assert _cond(down, "Degraded")["reason"] == "ReplicasLost"


def test_workload_state_from_deployment_and_lws() -> None:
    dep = {
        "kind": "Deployment",
        "metadata": {"name": "d", "generation": 3},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"b": "2", "a": "1"}}},
        "status": {
            "observedGeneration": 2,
            "readyReplicas": 2,
            "updatedReplicas": 2,
            "replicas": 2,
        },
    }
    ws = workload_state(dep)
    assert not ws.observed and ws.selector == "a=1,b=2" and ws.ready == 2
    lws = {"kind": "LeaderWorkerSet", "metadata": {"name": "l"}, "spec": {"replicas": 1}}
    ls = workload_state(lws)
    assert ls.ready == 0 and ls.desired == 1
    assert ls.selector == "leaderworkerset.sigs.k8s.io/name=l"
    stuck = dep | {
        "status": {
            "conditions": [
                {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}
            ]
        }
    }
    assert workload_state(stuck).stalled


def test_reconciling_while_a_canary_shifts_traffic_and_stalled_past_the_deadline() -> None:
    """What kstatus / Argo CD read: a canary is InProgress, a stuck rollout Failed."""
    canary = {
        "phase": "Progressing",
        "revision": "r2",
        "step": 0,
        "weight": 10,
        "message": "step 1/3 at 10 %",
    }
    st = _status(None, 3, OK, [_w(2)], now=T0, canary=canary)
    assert _cond(st, "Ready")["status"] == "True"  # the stable revision still serves
    assert _cond(st, "Reconciling")["status"] == "True"
    assert _cond(st, "Reconciling")["reason"] == "CanaryProgressing"
    done = _status(None, 3, OK, [_w(2)], now=T0)
    assert _cond(done, "Reconciling")["status"] == "False"
    rolling = _status(None, 3, OK, [_w(1, updated=1)], now=T0)
    assert _cond(rolling, "Reconciling")["status"] == "True"
    stuck = WorkloadState(
        kind="Deployment",
        name="r1",
        desired=2,
        current=2,
        ready=1,
        updated=1,
        observed=True,
        selector="app=r1",
        stalled=True,
    )
    st = _status(None, 3, OK, [stuck], now=T0)
    assert _cond(st, "Stalled")["status"] == "True"
    assert _cond(st, "Stalled")["reason"] == "ProgressDeadlineExceeded"
    assert _cond(st, "Reconciling")["status"] == "False"
    assert _cond(st, "Degraded")["status"] == "True"
