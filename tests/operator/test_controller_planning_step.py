"""Unit tests of the pure decisions of a pass: planning outcome, events, ownership."""

from __future__ import annotations

from typing import Any

import pytest

from deepseek_operator.controllers.kinds import owned_by, owner_name
from deepseek_operator.controllers.nodes import project_node
from deepseek_operator.controllers.planning_step import plan_events, plan_outcome, same_decision
from deepseek_operator.controllers.status import PlanOutcome, compute_status
from deepseek_operator.planning.examples import example_nodes

pytestmark = pytest.mark.unit
NODES = [project_node(n) for n in example_nodes()]


def _dsd(model: str, products: list[str], **spec: Any) -> dict[str, Any]:
    body = {
        "model": {"name": model, "source": {"uri": f"hf://{model}"}},
        "replicas": 1,
        "placement": {"gpu": {"products": products}},
        **spec,
    }
    return {
        "apiVersion": "deepseek.ai/v1alpha1",
        "kind": "DeepSeekDeployment",
        "metadata": {"name": "x", "namespace": "ns", "uid": "u-1", "generation": 1},
        "spec": body,
    }


def test_plan_outcome_fits_r1_on_h200() -> None:
    body = _dsd("deepseek-ai/DeepSeek-R1", ["H200"])
    body["spec"]["model"]["quantization"] = "fp8"
    r = plan_outcome(body, NODES)
    assert r.outcome.ok and r.plan is not None and r.dsd is not None
    assert r.outcome.plan is not None and r.outcome.plan["nodesPerReplica"] == 1
    assert r.outcome.reason == "Planned"


def test_plan_outcome_says_what_to_change() -> None:
    r = plan_outcome(_dsd("deepseek-ai/DeepSeek-R1", ["H200"], parallelism={"tensor": 3}), NODES)
    assert not r.outcome.ok and r.outcome.reason == "PlanFailed"
    assert "tensor" in r.outcome.message and "use one of" in r.outcome.message


def test_invalid_spec_is_reported_with_the_field() -> None:
    body = _dsd("deepseek-ai/DeepSeek-R1", ["H200"])
    body["spec"]["replicas"] = -2
    r = plan_outcome(body, NODES)
    assert not r.outcome.ok and r.outcome.reason == "InvalidSpec"
    assert "spec.replicas" in r.outcome.message


def test_events_only_for_new_decisions() -> None:
    ok = PlanOutcome(True, {"gpuProduct": "H200", "tensor": 8}, "Planned", "fits")
    bad = PlanOutcome(False, None, "PlanFailed", "no H300 in the cluster")
    first = plan_events(None, ok)
    assert [e.reason for e in first] == ["Planned"]
    status = compute_status(None, 1, ok, [], now="t")
    assert plan_events(status, ok) == []
    moved = PlanOutcome(True, {"gpuProduct": "H100", "tensor": 8}, "Planned", "fits")
    assert [e.reason for e in plan_events(status, moved)] == ["Replanned"]
    failed = plan_events(status, bad)
    assert [(e.type, e.reason) for e in failed] == [("Warning", "PlanFailed")]
    failed_status = compute_status(status, 2, bad, [], now="t")
    assert plan_events(failed_status, bad) == []
    assert same_decision(failed_status, False, None)
    assert same_decision(status, True, ok.plan) and not same_decision(status, True, moved.plan)


def test_owner_helpers() -> None:
    child = {
        "metadata": {
            "ownerReferences": [
                {
                    "apiVersion": "deepseek.ai/v1alpha1",
                    "kind": "DeepSeekDeployment",
                    "name": "a",
                    "uid": "u-1",
                }
            ]
        }
    }
    assert owner_name(child) == "a" and owned_by(child, "u-1") and not owned_by(child, "u-2")
    assert owner_name({"metadata": {}}) is None
