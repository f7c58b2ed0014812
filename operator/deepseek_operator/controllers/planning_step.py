"""The planning step of a reconcile pass and the Events it decides (pure).

Called by :mod:`.reconcile` and the resync timer of :mod:`.handlers`.
:func:`plan_outcome` turns a DeepSeekDeployment body, the node inventory and the
``configRef`` ConfigMap (when the spec names one) into a :class:`~.status.PlanOutcome`
(never raises for a bad spec: a spec the schema accepted but that cannot be served ends
as ``Planned=False`` with a message that says what to change).  :func:`plan_events`
decides which Kubernetes Events a pass emits, so a resync with an unchanged plan emits
none; :func:`missing_apis` folds children the cluster cannot store into the outcome.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from deepseek_operator.api import DeepSeekDeployment
from deepseek_operator.api.status import DeepSeekDeploymentStatus, PlanStatus
from deepseek_operator.planning import (
    Plan,
    PlanningError,
    inventory_from_nodes,
    plan_deployment,
)

from .events import EventSpec
from .kinds import WORKLOAD_KINDS
from .model_config import REASON_INVALID, ModelConfigError, describe, model_config_from
from .status import PlanOutcome


@dataclass(frozen=True, slots=True)
class PlanResult:
    """A planning pass: the outcome for status, and the objects rendering needs."""

    outcome: PlanOutcome
    dsd: DeepSeekDeployment | None
    plan: Plan | None


def _validation_message(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        parts.append(f"spec.{loc}: {err.get('msg', 'invalid')}" if loc else err.get("msg", ""))
    more = f" (and {exc.error_count() - 5} more)" if exc.error_count() > 5 else ""
    return "invalid spec: " + "; ".join(parts) + more


def _failed(reason: str, message: str, dsd: DeepSeekDeployment | None) -> PlanResult:
    return PlanResult(PlanOutcome(False, None, reason, message), dsd, None)


def plan_outcome(
    body: dict[str, Any],
    nodes: list[dict[str, Any]],
    config_map: Mapping[str, Any] | None = None,
) -> PlanResult:
    """Validate the spec and plan it against ``nodes`` (Node dicts).

    Args:
        config_map: the ConfigMap ``spec.model.configRef`` names, as read just now (None
            when it does not exist); ignored without ``configRef``.
    """
    try:
        dsd = DeepSeekDeployment.model_validate(body)
    except ValidationError as exc:
        return _failed("InvalidSpec", _validation_message(exc), None)
    except ValueError as exc:
        return _failed("InvalidSpec", f"invalid spec: {exc}", None)
    ref = dsd.spec.model.config_ref
    model_config: dict[str, Any] | None = None
    if ref is not None:
        try:
            model_config = model_config_from(config_map, ref, dsd.namespace)
        except ModelConfigError as exc:
            return _failed(exc.reason, exc.message, dsd)
    try:
        plan = plan_deployment(dsd.spec, inventory_from_nodes(nodes), model_config)
    except PlanningError as exc:
        if ref is not None and exc.field == "spec.model.configRef":
            return _failed(REASON_INVALID, f"{describe(ref, dsd.namespace)}: {exc}", dsd)
        reasons = [str(r) for r in getattr(exc, "reasons", []) or []]
        message = str(exc)
        if reasons:
            message += " (" + "; ".join(reasons[-3:]) + ")"
        return _failed("PlanFailed", message, dsd)
    except ValueError as exc:
        return _failed("PlanFailed", str(exc), dsd)
    summary = "; ".join(plan.reasons[:4]) if plan.reasons else "plan found"
    return PlanResult(PlanOutcome(True, plan.to_status(), "Planned", summary), dsd, plan)


def same_plan(status: DeepSeekDeploymentStatus, plan: dict[str, Any] | None) -> bool:
    """True when ``status.plan`` records ``plan`` (``Plan.to_status()``)."""
    return plan is not None and status.plan == PlanStatus.model_validate(plan)


def same_decision(status: DeepSeekDeploymentStatus, ok: bool, plan: dict[str, Any] | None) -> bool:
    """True when a fresh plan matches what status records (no re-plan needed)."""
    return status.planned() == ok and (not ok or same_plan(status, plan))


def plan_events(
    current_status: DeepSeekDeploymentStatus | None, outcome: PlanOutcome
) -> list[EventSpec]:
    """Events for a planning decision that differs from what status already records."""
    cur = current_status or DeepSeekDeploymentStatus()
    planned = cur.get_condition("Planned")
    if not outcome.ok:
        if planned is not None and planned.message == outcome.message and planned.status == "False":
            return []
        return [EventSpec("Warning", outcome.reason, outcome.message[:1000])]
    if cur.planned() and same_plan(cur, outcome.plan):
        if (
            "CRD not installed" in outcome.message
            and planned is not None
            and planned.message != outcome.message
        ):
            return [EventSpec("Warning", "MissingAPI", outcome.message[-500:])]
        return []
    reason = "Planned" if cur.plan is None else "Replanned"
    return [EventSpec("Normal", reason, _plan_summary(outcome)[:1000])]


def _plan_summary(outcome: PlanOutcome) -> str:
    plan = outcome.plan or {}
    shape = "×".join(str(plan.get(k, "?")) for k in ("tensor", "pipeline", "expert"))
    product = plan.get("gpuProduct", "?")
    gpus = plan.get("gpusPerReplica", "?")
    return f"{product}, {gpus} GPU(s) per replica, TP×PP×EP {shape}: {outcome.message}"


def missing_apis(result: PlanResult, skipped: list[str]) -> PlanResult:
    """Fold children the cluster cannot store (their CRD is absent) into the outcome.

    A missing workload API (LeaderWorkerSet for a multi-node plan) means the plan cannot
    run: ``Planned=False``. Missing optional integrations (ServiceMonitor, Istio, KEDA...)
    are named in the Planned message and the DSD is served without them.
    """
    names = ", ".join(skipped)
    workload_missing = any(s.split(" ")[0] in {k for _, k in WORKLOAD_KINDS} for s in skipped)
    if workload_missing:
        message = (
            f"the cluster does not serve {names}: install its CRD and controller, or "
            "change placement so that one node holds a replica"
        )
        return _failed("MissingAPI", message, result.dsd)
    outcome = result.outcome
    message = f"{outcome.message} (not created, CRD not installed: {names})"
    if not outcome.ok:
        return result
    return PlanResult(
        PlanOutcome(outcome.ok, outcome.plan, outcome.reason, message), result.dsd, result.plan
    )
