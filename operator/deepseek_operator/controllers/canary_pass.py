"""The canary step of a reconcile pass: read the live stable revision, decide, record.

Called by :func:`.reconcile.reconcile` between planning and rendering. It reads the
revision the live stable workload serves (``deepseek.ai/revision`` on its pod template),
asks the pure state machine :func:`.canary.decide` for the next ``status.canary`` and
returns it as the rollout state that rendering splits traffic (or holds the stable
workload) by. The controller writes it to status with the rest of the pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from deepseek_operator.api import API_VERSION, KIND, CanaryStatus, DeepSeekDeployment
from deepseek_operator.api.status import AnalysisRun
from deepseek_operator.planning import Plan
from deepseek_operator.render import LABEL_REVISION, spec_revision, workload_name

from .canary import CanaryDecision, CanaryInputs, decide
from .kinds import DEPLOYMENT, LEADER_WORKER_SET
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
    api_version, kind = LEADER_WORKER_SET if plan.multi_node else DEPLOYMENT
    if kube.resource(api_version, kind) is None:
        return None
    return template_revision(kube.get(api_version, kind, dsd.namespace, name))


def live_canary(kube: Kube, dsd: DeepSeekDeployment) -> CanaryStatus | None:
    """``status.canary`` as stored now: a handler's body may predate the canary timer's
    last write, and deciding from a stale Progressing would resurrect a promoted canary."""
    live = kube.get(API_VERSION, KIND, dsd.namespace, dsd.name)
    raw = ((live or {}).get("status") or {}).get("canary")
    return CanaryStatus.model_validate(raw) if raw else None


@dataclass(frozen=True, slots=True)
class CanaryPass:
    """The canary part of one pass.

    Attributes:
        state: the rollout state rendering uses (:func:`.render.render_children`'s
            ``canary``): the new decision, else the canary as stored now.
        decision: the next ``status.canary`` and its Events; None when nothing changes
            (a pass with a stale body then leaves the recorded canary, maybe advanced
            meanwhile by the canary timer, as it is).
    """

    state: CanaryStatus | None
    decision: CanaryDecision | None = None


def drive_canary(
    kube: Kube,
    dsd: DeepSeekDeployment,
    plan: Plan,
    now: str,
    analysis: AnalysisRun | None = None,
    *,
    first: bool = False,
) -> CanaryPass:
    """Decide the next ``status.canary`` from the live stable and canary state.

    Outside a ``Canary`` rollout there is no canary state (nothing is read).

    Args:
        first: the DSD was never planned, so no stable workload can exist (no read).
    """
    if dsd.spec.rollout.strategy != "Canary":
        return CanaryPass(None)
    current = None if first else live_canary(kube, dsd)
    stable = None if first else stable_revision(kube, dsd, plan)
    decision = decide(
        CanaryInputs(dsd.spec.rollout, spec_revision(dsd), stable, current, now, analysis)
    )
    if decision.status == current:
        return CanaryPass(current)
    return CanaryPass(decision.status, decision)
