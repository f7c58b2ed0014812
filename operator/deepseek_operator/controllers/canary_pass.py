"""The canary step of a reconcile pass: read the live stable revision, decide, record.

Called by :func:`.reconcile.reconcile` between planning and rendering. It reads the
revision the live stable workload serves (``deepseek.ai/revision`` on its pod template),
asks the pure state machine :func:`.canary.decide` for the next ``status.canary`` and
puts it on the in-memory DSD, so rendering splits traffic (or holds the stable workload)
by it. The controller writes it to status with the rest of the pass.
"""

from __future__ import annotations

from typing import Any

from deepseek_operator.api import GROUP, KIND, VERSION, CanaryStatus, DeepSeekDeployment
from deepseek_operator.api.status import AnalysisRun, DeepSeekDeploymentStatus
from deepseek_operator.planning import Plan
from deepseek_operator.render import LABEL_REVISION, spec_revision, workload_name

from .canary import CanaryDecision, CanaryInputs, decide
from .kube import Kube


def template_revision(obj: dict[str, Any] | None) -> str | None:
    """``deepseek.ai/revision`` of a live Deployment's or LeaderWorkerSet's pod template."""
    if obj is None:
        return None
    spec = obj.get("spec") or {}
    template = spec.get("template") or (spec.get("leaderWorkerTemplate") or {}).get(
        "leaderTemplate"
    )
    labels = ((template or {}).get("metadata") or {}).get("labels") or {}
    value = labels.get(LABEL_REVISION)
    return str(value) if value else None


def stable_revision(kube: Kube, dsd: DeepSeekDeployment, plan: Plan) -> str | None:
    """The revision the live stable workload serves; None when it does not exist."""
    name = workload_name(dsd, "stable", plan.multi_node)
    api_version, kind = (
        ("leaderworkerset.x-k8s.io/v1", "LeaderWorkerSet")
        if plan.multi_node
        else ("apps/v1", "Deployment")
    )
    if kube.resource(api_version, kind) is None:
        return None
    return template_revision(kube.get(api_version, kind, dsd.namespace, name))


def live_canary(kube: Kube, dsd: DeepSeekDeployment) -> CanaryStatus | None:
    """``status.canary`` as stored now: a handler's body may predate the canary timer's
    last write, and deciding from a stale Progressing would resurrect a promoted canary."""
    live = kube.get(f"{GROUP}/{VERSION}", KIND, dsd.namespace, dsd.name)
    raw = ((live or {}).get("status") or {}).get("canary")
    return CanaryStatus.model_validate(raw) if raw else None


def drive_canary(
    kube: Kube,
    dsd: DeepSeekDeployment,
    plan: Plan,
    now: str,
    analysis: AnalysisRun | None = None,
    *,
    first: bool = False,
) -> CanaryDecision | None:
    """Decide the next ``status.canary`` and set it on ``dsd`` (for rendering).

    Returns None (nothing to record) unless ``spec.rollout.strategy`` is ``Canary`` and
    the decision changes ``status.canary``: a pass with a stale body then leaves the
    recorded canary (maybe advanced meanwhile by the canary timer) as it is.

    Args:
        first: the DSD was never planned, so no stable workload can exist (no read).
    """
    if dsd.spec.rollout.strategy != "Canary":
        return None
    if dsd.status is None:
        dsd.status = DeepSeekDeploymentStatus()
    current = None if first else live_canary(kube, dsd)
    dsd.status.canary = current
    stable = None if first else stable_revision(kube, dsd, plan)
    decision = decide(
        CanaryInputs(dsd.spec.rollout, spec_revision(dsd), stable, current, now, analysis)
    )
    if decision.status == current:
        return None
    dsd.status.canary = decision.status
    return decision
