"""Table tests of the canary state machine (:mod:`deepseek_operator.controllers.canary`),
the analysis verdicts (with an injected query function) and the rendering of a failed
canary (the stable workload is held)."""

from __future__ import annotations

import math
from typing import Any

import pytest
from dsd_factory import L40S, dsd, inventory, pool

from deepseek_operator.api import CanaryStatus, DeepSeekDeployment, RolloutSpec
from deepseek_operator.api.status import AnalysisRun, MetricResult
from deepseek_operator.controllers.analysis import builtin_query, metric_query, run_analysis
from deepseek_operator.controllers.canary import CanaryInputs, analysis_due, decide
from deepseek_operator.controllers.status import compute_status, parse_status
from deepseek_operator.planning import plan_deployment
from deepseek_operator.render import render_children, spec_revision, stable_held

pytestmark = pytest.mark.unit

T0 = "2026-01-01T00:00:00Z"
T5 = "2026-01-01T00:00:05Z"
T20 = "2026-01-01T00:00:20Z"
CANARY = RolloutSpec.model_validate(
    {
        "strategy": "Canary",
        "canary": {
            "steps": [{"weight": 20, "pause": "10s"}, {"weight": 60, "pause": "10s"}],
            "analysis": {"interval": "5s", "failureLimit": 2},
        },
    }
)
PASS = AnalysisRun(time=T20, passed=True, metrics=[MetricResult(name="e", value=0.0, passed=True)])
FAIL = AnalysisRun(
    time=T20, passed=False, metrics=[MetricResult(name="e", value=1.0, message="above max 0.01")]
)


def running(step: int = 0, failures: int = 0, revision: str = "new") -> CanaryStatus:
    weight = CANARY.canary.steps[step].weight
    return CanaryStatus(
        revision=revision,
        stable_revision="old",
        step=step,
        weight=weight,
        step_started=T0,
        failures=failures,
        phase="Progressing",
    )


def inputs(**kw: Any) -> CanaryInputs:
    base: dict[str, Any] = {
        "rollout": CANARY,
        "revision": "new",
        "stable_revision": "old",
        "current": None,
        "now": T20,
        "analysis": None,
    }
    return CanaryInputs(**{**base, **kw})


# name: (inputs, expected (phase, step, weight, failures, stable_revision), event reasons)
CASES: dict[str, tuple[CanaryInputs, tuple[Any, ...] | None, list[str]]] = {
    "first rollout is not a canary": (inputs(stable_revision=None), None, []),
    "rolling update untouched": (
        inputs(rollout=RolloutSpec(), stable_revision="old"),
        None,
        [],
    ),
    "no change, no canary": (inputs(revision="old"), None, []),
    "spec change starts": (inputs(), ("Progressing", 0, 20, 0, "old"), ["CanaryStarted"]),
    "no analysis yet: unchanged": (
        inputs(current=running()),
        ("Progressing", 0, 20, 0, "old"),
        [],
    ),
    "analysis passed within pause: stays": (
        inputs(current=running(), now=T5, analysis=PASS),
        ("Progressing", 0, 20, 0, "old"),
        [],
    ),
    "analysis passed after pause: advances": (
        inputs(current=running(), analysis=PASS),
        ("Progressing", 1, 60, 0, "old"),
        ["CanaryStepAdvanced"],
    ),
    "last step passed: promotes": (
        inputs(current=running(step=1), analysis=PASS),
        ("Succeeded", 1, 0, 0, "new"),
        ["CanaryPromoted"],
    ),
    "one failure counts": (
        inputs(current=running(), analysis=FAIL),
        ("Progressing", 0, 20, 1, "old"),
        ["AnalysisFailed"],
    ),
    "failureLimit reached: fails": (
        inputs(current=running(failures=1), analysis=FAIL),
        ("Failed", 0, 0, 2, "old"),
        ["CanaryFailed"],
    ),
    "failed revision stays failed": (
        inputs(current=running(failures=2).model_copy(update={"phase": "Failed", "weight": 0})),
        ("Failed", 0, 0, 2, "old"),
        [],
    ),
    "new spec during a canary restarts it": (
        inputs(current=running(step=1, revision="mid"), stable_revision="old"),
        ("Progressing", 0, 20, 0, "old"),
        ["CanaryStarted"],
    ),
    "new spec after a failure starts again": (
        inputs(current=running(revision="bad").model_copy(update={"phase": "Failed"})),
        ("Progressing", 0, 20, 0, "old"),
        ["CanaryStarted"],
    ),
    "spec reverted during a canary: abandoned": (
        inputs(current=running(step=1), revision="old"),
        (None, 1, 0, 0, "old"),
        ["CanaryAbandoned"],
    ),
    "spec reverted after a failure: abandoned": (
        inputs(current=running().model_copy(update={"phase": "Failed"}), revision="old"),
        (None, 0, 0, 0, "old"),
        ["CanaryAbandoned"],
    ),
    "promoted revision settles": (
        inputs(
            current=running(step=1).model_copy(
                update={"phase": "Succeeded", "stable_revision": "new"}
            ),
            stable_revision="new",
        ),
        ("Succeeded", 1, 60, 0, "new"),
        [],
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_canary_state_machine(case: str) -> None:
    given, expected, reasons = CASES[case]
    decision = decide(given)
    assert [e.reason for e in decision.events] == reasons
    st = decision.status
    if expected is None:
        assert st == given.current
        return
    assert st is not None
    assert (st.phase, st.step, st.weight, st.failures, st.stable_revision) == expected
    assert st.revision == (
        given.current.revision if st.phase is None and given.current else given.revision
    )
    if given.analysis is not None:
        assert st.last_analysis == given.analysis
    if reasons:
        assert st.message


def test_step_started_moves_only_on_a_new_step() -> None:
    advanced = decide(inputs(current=running(), analysis=PASS)).status
    assert advanced is not None and advanced.step_started == T20
    started = decide(inputs()).status
    assert started is not None and started.step_started == T20


def test_analysis_due_after_interval() -> None:
    assert analysis_due(running(), "5s", T5)
    assert not analysis_due(running(), "10s", T5)
    done = running().model_copy(update={"last_analysis": PASS})
    assert not analysis_due(done, "5s", T20) and analysis_due(done, "5s", "2026-01-01T00:00:25Z")
    assert not analysis_due(None, "5s", T20)
    assert not analysis_due(running().model_copy(update={"phase": "Failed"}), "5s", T20)


def _canary_dsd(**status: Any) -> DeepSeekDeployment:
    base = dsd(
        model_name="deepseek-ai/DeepSeek-R1-Distill-Qwen-7B",
        rollout={
            "strategy": "Canary",
            "canary": {
                "analysis": {
                    "metrics": [
                        {"name": "errors", "builtin": "error-rate", "max": 1},
                        {"name": "custom", "query": 'up{namespace="{{ namespace }}"}', "min": 1},
                    ]
                }
            },
        },
        traffic={"istio": {}},
    )
    body = base.model_dump(by_alias=True, exclude_none=True)
    return DeepSeekDeployment.model_validate({**body, "status": status} if status else body)


def test_analysis_judges_each_metric_and_never_passes_silently() -> None:
    d = _canary_dsd()
    assert metric_query(d, d.spec.rollout.canary.analysis.metrics[1]) == 'up{namespace="serving"}'
    assert 'pod=~"r1-canary-' in builtin_query(d, "error-rate")
    assert "vllm:e2e_request_latency_seconds_bucket" in builtin_query(d, "latency-p95")
    values = iter([0.5, 2.0])
    run = run_analysis(d, T0, lambda q: next(values))
    assert run.passed and [m.value for m in run.metrics] == [0.5, 2.0]
    values = iter([3.0, None])
    run = run_analysis(d, T0, lambda q: next(values))
    assert not run.passed
    assert [m.message for m in run.metrics] == ["above max 1", "no data"]
    run = run_analysis(d, T0, lambda q: math.nan)
    assert not run.passed and "NaN" in run.metrics[0].message

    def unreachable(query: str) -> float | None:
        raise ValueError("connection refused")

    run = run_analysis(d, T0, unreachable)
    assert not run.passed
    assert all("Prometheus query failed" in m.message for m in run.metrics)


def test_failed_canary_holds_the_stable_workload() -> None:
    fresh = _canary_dsd()
    rev = spec_revision(fresh)
    plan = plan_deployment(fresh.spec, inventory(pool(L40S, 2)))
    failed = _canary_dsd(canary={"phase": "Failed", "revision": rev, "weight": 0})
    assert failed.status is not None
    assert stable_held(failed, failed.status.canary)
    assert not [
        o for o in render_children(failed, plan, failed.status.canary) if o["kind"] == "Deployment"
    ]
    older = _canary_dsd(canary={"phase": "Failed", "revision": "other", "weight": 0})
    assert older.status is not None
    assert not stable_held(older, older.status.canary)
    names = [
        o["metadata"]["name"]
        for o in render_children(older, plan, older.status.canary)
        if o["kind"] == "Deployment"
    ]
    assert names == ["r1"]


def test_conditions_follow_the_canary() -> None:
    canary = {"phase": "Progressing", "weight": 20, "message": "step 0"}
    st = compute_status(
        None, 1, None, [], now=T0, canary=CanaryStatus.model_validate(canary)
    ).to_k8s()
    cond = {c["type"]: c for c in st["conditions"]}
    assert (cond["Progressing"]["status"], cond["Progressing"]["reason"]) == (
        "True",
        "CanaryProgressing",
    )
    assert st["canary"] == canary
    failed = {"phase": "Failed", "weight": 0, "message": "2 failed analyses"}
    st = compute_status(
        parse_status(st), 1, None, [], now=T0, canary=CanaryStatus.model_validate(failed)
    ).to_k8s()
    cond = {c["type"]: c for c in st["conditions"]}
    assert (cond["Degraded"]["status"], cond["Degraded"]["reason"]) == ("True", "CanaryFailed")
