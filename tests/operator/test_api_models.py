"""Spec and status models: defaults, aliases, cross-field validation, condition helpers."""

from __future__ import annotations

import pytest
from dsd_factory import dsd, spec
from pydantic import ValidationError

from deepseek_operator.api import (
    CONDITION_TYPES,
    DeepSeekDeployment,
    DeepSeekDeploymentStatus,
    defaults,
)
from deepseek_operator.api.validation import duration_seconds

pytestmark = pytest.mark.unit


def test_defaults_carry_the_operating_practice() -> None:
    s = spec()
    assert s.resilience.health.period_seconds == 30
    assert s.resilience.health.failure_threshold == 3
    assert s.resilience.circuit_breaker.consecutive_5xx_errors == 5
    assert s.resilience.circuit_breaker.error_rate_percent == 5.0
    assert s.rollout.canary.steps[0].weight == 10
    t = s.monitoring.alerts.thresholds
    assert (t.gpu_utilization_percent, t.gpu_utilization_for) == (90.0, "5m")
    assert t.kv_cache_fragmentation_percent == 30.0
    assert t.p95_latency_milliseconds == 500
    assert t.error_rate_percent == 1.0
    scaled = spec(autoscaling={})
    assert scaled.autoscaling is not None
    assert (scaled.autoscaling.min_replicas, scaled.autoscaling.max_replicas) == (2, 10)
    assert s.desired_replicas() == 1
    assert scaled.desired_replicas() == defaults.MIN_REPLICAS


def test_camel_case_round_trip() -> None:
    s = spec(
        placement={"gpu": {"products": ["H200"], "minMemoryGiB": 80}},
        resilience={"circuitBreaker": {"consecutive5xxErrors": 7}},
    )
    assert s.placement.gpu.min_memory_gib == 80
    wire = s.to_k8s()
    assert wire["placement"]["gpu"]["minMemoryGiB"] == 80
    assert wire["resilience"]["circuitBreaker"]["consecutive5xxErrors"] == 7
    assert wire["model"]["maxModelLen"] == 32768
    assert type(s).model_validate(wire) == s


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"replicas": 2, "autoscaling": {}}, "either spec.replicas or spec.autoscaling"),
        ({"autoscaling": {"minReplicas": 5, "maxReplicas": 3}}, "must not exceed"),
        ({"rollout": {"strategy": "Canary"}}, "set spec.traffic.istio"),
        ({"rollout": {"canary": {"steps": [{"weight": 50}, {"weight": 20}]}}}, "rise strictly"),
        ({"rollout": {"canary": {"steps": [{"weight": 120}]}}}, "less than or equal to 100"),
        ({"parallelism": {"tensor": 8, "expert": 3}}, "parallelism.expert must be 1"),
        ({"replicas": -1}, "greater than or equal to 0"),
        ({"engine": {"kind": "tgi"}}, "'auto', 'native', 'vllm' or 'triton'"),
        ({"model": {"maxModelLen": 10}}, "greater than or equal to 256"),
        ({"model": {"source": {"uri": "ftp://x"}}}, "should match pattern"),
        ({"modle": {}}, "Extra inputs are not permitted"),
        ({"placement": {"gpu": {"products": ["H100", "H100"]}}}, "duplicate entry 'H100'"),
        ({"engine": {"env": [{"name": "A"}, {"name": "A"}]}}, "duplicate entry 'A'"),
        (
            {"rollout": {"canary": {"analysis": {"metrics": [{"name": "x"}]}}}},
            "exactly one of builtin, query",
        ),
    ],
)
def test_invalid_specs_are_rejected_with_a_reason(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        spec(**fields)


def test_int_or_string_surge() -> None:
    s = spec(rollout={"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 1}})
    assert s.rollout.rolling_update.max_surge == "25%"
    assert s.rollout.rolling_update.max_unavailable == 1


def test_resource_parses_kubernetes_dicts_and_ignores_server_fields() -> None:
    obj = dsd().model_dump(by_alias=True, exclude_none=True)
    obj["metadata"]["managedFields"] = [{"manager": "kubectl"}]
    obj["status"] = {
        "observedGeneration": 1,
        "futureField": True,
        "conditions": [{"type": "Ready", "status": "True", "reason": "Ok"}],
    }
    parsed = DeepSeekDeployment.model_validate(obj)
    assert parsed.status is not None and parsed.status.is_true("Ready")
    assert parsed.owner_reference()["controller"] is True


def test_set_condition_moves_transition_time_only_on_status_change() -> None:
    st = DeepSeekDeploymentStatus()
    assert st.set_condition("Planned", True, "Planned", "8xH200", 1, now="t1")
    assert not st.set_condition("Planned", "True", "Planned", "8xH200", 1, now="t2")
    cond = st.get_condition("Planned")
    assert cond is not None and cond.last_transition_time == "t1"
    assert st.set_condition("Planned", True, "Replanned", "2x8xH100", 2, now="t3")
    assert cond.last_transition_time == "t1" and cond.observed_generation == 2
    assert st.set_condition("Planned", False, "NoPool", "too big", 3, now="t4")
    assert cond.last_transition_time == "t4" and cond.status == "False"
    assert st.get_condition("Ready") is None and not st.is_true("Ready")
    wire = st.to_k8s()
    assert wire["conditions"][0]["lastTransitionTime"] == "t4"


def test_planned_and_condition_order() -> None:
    st = DeepSeekDeploymentStatus()
    assert not st.planned() and not st.plan_recorded()
    for ctype in ("Stalled", "Ready", "Custom", "Planned"):
        st.set_condition(ctype, True, "R", now="t1")
    assert st.planned()
    st.keep_conditions()
    assert [c.type for c in st.conditions] == ["Planned", "Ready", "Stalled"]
    assert [c.type for c in st.conditions] == [
        t for t in CONDITION_TYPES if t in {"Ready", "Stalled", "Planned"}
    ]
    st.set_condition("Planned", False, "PlanFailed", "no pool", now="t2")
    assert not st.planned() and st.plan_recorded()


@pytest.mark.parametrize(
    ("text", "seconds"), [("30s", 30), ("5m", 300), ("1h30m", 5400), ("500ms", 0.5)]
)
def test_durations(text: str, seconds: float) -> None:
    assert duration_seconds(text) == seconds


def test_bad_duration() -> None:
    with pytest.raises(ValueError, match="not a duration"):
        duration_seconds("5 minutes")
