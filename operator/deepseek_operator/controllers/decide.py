"""Planning step and event decisions of a reconcile pass (pure).

Called by :mod:`.reconcile`.  :func:`plan_outcome` turns a DeepSeekDeployment
body and the node inventory into a :class:`~.status.PlanOutcome` (never raises for
a bad spec: a spec the schema accepted but that cannot be served ends as
``Planned=False`` with a message that says what to change).  :func:`plan_events`
decides which Kubernetes Events a pass emits, so a resync with an unchanged plan
emits none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from deepseek_operator.api import DeepSeekDeployment
from deepseek_operator.planning import (
    Plan,
    PlanningError,
    inventory_from_nodes,
    plan_deployment,
)

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


def plan_outcome(body: dict[str, Any], nodes: list[dict[str, Any]]) -> PlanResult:
    """Validate the spec and plan it against ``nodes`` (Node dicts)."""
    try:
        dsd = DeepSeekDeployment.model_validate(body)
    except ValidationError as exc:
        return PlanResult(
            PlanOutcome(False, None, "InvalidSpec", _validation_message(exc)), None, None
        )
    except ValueError as exc:
        return PlanResult(
            PlanOutcome(False, None, "InvalidSpec", f"invalid spec: {exc}"), None, None
        )
    try:
        plan = plan_deployment(dsd.spec, inventory_from_nodes(nodes))
    except PlanningError as exc:
        reasons = [str(r) for r in getattr(exc, "reasons", []) or []]
        message = str(exc)
        if reasons:
            message += " (" + "; ".join(reasons[-3:]) + ")"
        return PlanResult(PlanOutcome(False, None, "PlanFailed", message), dsd, None)
    except ValueError as exc:
        return PlanResult(PlanOutcome(False, None, "PlanFailed", str(exc)), dsd, None)
    summary = "; ".join(plan.reasons[:4]) if plan.reasons else "plan found"
    return PlanResult(PlanOutcome(True, plan.to_status(), "Planned", summary), dsd, plan)


@dataclass(frozen=True, slots=True)
class EventSpec:
    """One Kubernetes Event to post on the DSD."""

    type: str
    reason: str
    message: str


def plan_events(current_status: dict[str, Any] | None, outcome: PlanOutcome) -> list[EventSpec]:
    """Events for a planning decision that differs from what status already records."""
    cur = current_status or {}
    planned = next((c for c in cur.get("conditions") or [] if c.get("type") == "Planned"), None)
    old_plan = cur.get("plan")
    if not outcome.ok:
        if (
            planned is not None
            and planned.get("message") == outcome.message
            and planned.get("status") == "False"
        ):
            return []
        return [EventSpec("Warning", outcome.reason, outcome.message[:1000])]
    if old_plan == outcome.plan and planned and planned.get("status") == "True":
        if "CRD not installed" in outcome.message and planned.get("message") != outcome.message:
            return [EventSpec("Warning", "MissingAPI", outcome.message[-500:])]
        return []
    reason = "Planned" if not old_plan else "Replanned"
    return [EventSpec("Normal", reason, _plan_summary(outcome)[:1000])]


def _plan_summary(outcome: PlanOutcome) -> str:
    plan = outcome.plan or {}
    shape = "×".join(str(plan.get(k, "?")) for k in ("tensor", "pipeline", "expert"))
    product = plan.get("gpuProduct", "?")
    gpus = plan.get("gpusPerReplica", "?")
    return f"{product}, {gpus} GPU(s) per replica, TP×PP×EP {shape}: {outcome.message}"


def owner_name(obj: dict[str, Any], kind: str = "DeepSeekDeployment") -> str | None:
    """Name of the controlling owner of ``kind``, if any."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("kind") == kind and str(ref.get("apiVersion", "")).startswith("deepseek.ai/"):
            return str(ref.get("name"))
    return None


def owned_by(obj: dict[str, Any], uid: str) -> bool:
    """True when ``obj`` has an owner reference to ``uid``."""
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    return any(ref.get("uid") == uid for ref in refs)
