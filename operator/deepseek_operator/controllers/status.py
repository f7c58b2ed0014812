"""Status and conditions of a DeepSeekDeployment, computed from facts (pure).

Called by :mod:`.reconcile` (after planning and applying) and by the workload
watch in :mod:`.handlers` (when a Deployment or LeaderWorkerSet changes).  The
result is a complete :class:`~deepseek_operator.api.status.DeepSeekDeploymentStatus`,
built with its condition methods; :func:`status_patch` reduces it to the keys that
differ from the live status, so an unchanged status is never written.

Conditions (kstatus-compatible: ``Ready`` plus ``observedGeneration``)::

    Planned      True  once a plan fits the cluster; False + what to change
    Progressing  True  while workloads roll out or scale; False when complete
    Available    True  when at least one replica serves
    Progressing  True  also while a canary runs (reason CanaryProgressing)
    Degraded     True  when serving is impaired (plan failed on update,
                       rollout stuck, replicas lost after being available,
                       canary failed: reason CanaryFailed)
    Ready        True  when planned, rolled out and every replica is ready
    Stalled      True  when the spec cannot be planned (kstatus: Failed, not InProgress)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from deepseek_operator.api.status import CanaryStatus, DeepSeekDeploymentStatus, PlanStatus


@dataclass(frozen=True, slots=True)
class PlanOutcome:
    """The result of one planning pass.

    Attributes:
        ok: True when a plan was found.
        plan: ``Plan.to_status()`` when ok, else None.
        reason: a CamelCase condition reason (``Planned``, ``InvalidSpec``, ``PlanFailed``).
        message: a sentence for humans; on failure it says what to change.
    """

    ok: bool
    plan: dict[str, Any] | None
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class WorkloadState:
    """What the status needs from one live Deployment or LeaderWorkerSet."""

    kind: str
    name: str
    desired: int
    current: int
    ready: int
    updated: int
    observed: bool
    stalled: bool = False
    selector: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)


def _selector(matchlabels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(matchlabels.items()))


def workload_state(obj: dict[str, Any]) -> WorkloadState:
    """Summarise a live Deployment or LeaderWorkerSet object."""
    kind = str(obj.get("kind", ""))
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    st = obj.get("status") or {}
    desired = int(spec.get("replicas", 1) if spec.get("replicas") is not None else 1)
    generation = int(meta.get("generation") or 0)
    conditions = {c.get("type"): c for c in st.get("conditions") or []}
    if kind == "LeaderWorkerSet":
        observed = True  # LWS status has no observedGeneration; rely on updatedReplicas
        selector = f"leaderworkerset.sigs.k8s.io/name={meta.get('name', '')}"
    else:
        observed = int(st.get("observedGeneration") or 0) >= generation
        selector = _selector((spec.get("selector") or {}).get("matchLabels") or {})
    progressing = conditions.get("Progressing") or {}
    stalled = progressing.get("reason") == "ProgressDeadlineExceeded"
    return WorkloadState(
        kind=kind,
        name=str(meta.get("name", "")),
        desired=desired,
        current=int(st.get("replicas") or 0),
        ready=int(st.get("readyReplicas") or 0),
        updated=int(st.get("updatedReplicas") or 0),
        observed=observed,
        stalled=stalled,
        selector=selector,
    )


def _recorded_plan(
    previous: DeepSeekDeploymentStatus, generation: int
) -> tuple[bool, str, str, int]:
    """(planned, reason, message, generation) of the last planning pass, as recorded."""
    old = previous.get_condition("Planned")
    if old is None:
        return False, "Pending", "waiting for the first plan", generation
    observed = old.observed_generation if old.observed_generation is not None else generation
    return old.status == "True", old.reason, old.message, observed


def compute_status(
    current: DeepSeekDeploymentStatus | None,
    generation: int,
    outcome: PlanOutcome | None,
    workloads: list[WorkloadState],
    *,
    now: str,
    endpoint: str | None = None,
    selector: str | None = None,
    canary: CanaryStatus | None = None,
    apply_error: str | None = None,
) -> DeepSeekDeploymentStatus:
    """Compute the full status from the live one and this pass's facts.

    Args:
        current: the live ``status`` (None when the DSD has none yet); not modified.
        generation: ``metadata.generation`` of the DSD.
        outcome: this pass's planning result, or None to keep the recorded one
            (workload events do not re-plan).
        workloads: live workloads owned by the DSD.
        now: RFC 3339 timestamp used for changed conditions.
        endpoint: the in-cluster URL of the served model, when known.
        selector: the serving pods' label selector (scale subresource); when None the
            recorded one is kept, else the first workload's.
        canary: the next ``status.canary`` (:mod:`.canary`); None keeps the recorded one.
            A running canary sets Progressing=True; a failed one Degraded=True.
        apply_error: the apiserver refused a child this pass (``ApplyFailed``): Degraded
            and Ready say so with its message, instead of the DSD looking merely slow
            while the operator retries.
    """
    previous = current or DeepSeekDeploymentStatus()
    out = previous.model_copy(deep=True)
    if outcome is not None:
        planned_ok, p_reason, p_msg = outcome.ok, outcome.reason, outcome.message
        observed_gen = generation
        if outcome.ok:
            out.plan = PlanStatus.model_validate(outcome.plan or {})
    else:
        recorded = previous.observed_generation or 0
        planned_ok, p_reason, p_msg, observed_gen = _recorded_plan(previous, recorded)
    out.observed_generation = gen = observed_gen

    def add(ctype: str, value: bool, reason: str, message: str) -> None:
        out.set_condition(ctype, value, reason, message, gen, now=now)

    add("Planned", planned_ok, p_reason, p_msg)

    desired = sum(w.desired for w in workloads)
    ready = sum(min(w.ready, w.desired) for w in workloads)
    updated = sum(w.updated for w in workloads)
    rolled_out = bool(workloads) and all(w.observed for w in workloads) and updated >= desired
    complete = rolled_out and ready >= desired
    stalled = any(w.stalled for w in workloads)
    out.replicas = sum(w.current for w in workloads)
    out.ready_replicas = ready
    selectors = [w.selector for w in workloads if w.selector]
    if selector:
        out.selector = selector
    elif selectors and not out.selector:
        out.selector = selectors[0]
    if endpoint:
        out.endpoint = endpoint
    if canary is not None:
        out.canary = canary
    canary_phase = out.canary.phase if out.canary is not None else None
    canary_msg = (out.canary.message if out.canary is not None else None) or ""

    if canary_phase == "Progressing":
        progressing = (True, "CanaryProgressing", canary_msg)
    elif not workloads:
        why = "no workload yet" if planned_ok else "nothing is deployed until the spec plans"
        progressing = (planned_ok, "Creating", why)
    elif complete:
        progressing = (False, "RolloutComplete", f"{ready}/{desired} replicas ready and up to date")
    else:
        msg = f"{updated}/{desired} replicas updated, {ready}/{desired} ready"
        progressing = (True, "RollingOut", msg)
    add("Progressing", *progressing)
    # kstatus / Argo CD: Reconciling=True reads InProgress (a canary keeps Ready=True while
    # traffic still shifts); a stalled rollout is not reconciling any more, it is Stalled
    attempted = outcome is not None or previous.plan_recorded()
    blocked = not planned_ok and attempted  # Stalled below: nothing will converge
    if progressing[0] and not stalled and not blocked:
        add("Reconciling", True, progressing[1], progressing[2])
    else:
        add("Reconciling", False, "Reconciled", "nothing left to converge")

    available = ready >= 1 or (bool(workloads) and desired == 0)
    a_msg = f"{ready} replica(s) serving" if ready else "no replica is ready yet"
    add("Available", available, "ReplicasReady" if available else "NoReadyReplicas", a_msg)

    if apply_error is not None:
        deg = (True, "ApplyFailed", apply_error)
    elif workloads and not planned_ok:
        deg = (True, "PlanFailed", f"serving the previous plan; {p_msg}")
    elif stalled:
        deg = (True, "ProgressDeadlineExceeded", "a workload stopped making rollout progress")
    elif previous.is_true("Available") and not available:
        deg = (True, "ReplicasLost", "all replicas became unready after serving")
    elif canary_phase == "Failed":
        deg = (True, "CanaryFailed", canary_msg)
    elif out.circuit is not None and (tripped := out.circuit.impairment()) is not None:
        deg = (True, *tripped)
    else:
        deg = (False, "AsExpected", "no impairment detected")
    add("Degraded", *deg)

    if not planned_ok:
        ready_cond = (False, p_reason, p_msg)
    elif apply_error is not None:
        ready_cond = (False, "ApplyFailed", apply_error)
    elif complete:
        ready_cond = (True, "Ready", f"{ready}/{desired} replicas ready")
    else:
        ready_cond = (False, "WaitingForReplicas", f"{ready}/{desired} replicas ready")
    add("Ready", *ready_cond)
    # kstatus: Stalled=True makes Flux/kpt report Failed at once instead of timing out
    if blocked:
        add("Stalled", True, p_reason, p_msg)
    elif stalled:
        add(
            "Stalled",
            True,
            "ProgressDeadlineExceeded",
            "a workload stopped making rollout progress (its progress deadline passed); "
            "see the workload's events",
        )
    else:
        reason = "Planned" if planned_ok else "Pending"
        add("Stalled", False, reason, "planning is not blocked")
    out.keep_conditions()

    if not planned_ok and not workloads:
        out.phase = "Failed" if attempted else "Pending"
    elif deg[0]:
        out.phase = "Degraded"
    elif ready_cond[0]:
        out.phase = "Ready"
    else:
        out.phase = "Progressing"
    return out


def status_patch(
    current: dict[str, Any] | None, desired: DeepSeekDeploymentStatus
) -> dict[str, Any]:
    """The top-level status keys (Kubernetes JSON) whose values differ; empty when none."""
    cur = current or {}
    return {k: v for k, v in desired.to_k8s().items() if cur.get(k) != v}


def parse_status(raw: Mapping[str, Any] | None) -> DeepSeekDeploymentStatus:
    """The typed form of a live ``status`` (empty when absent or unreadable).

    The CRD schema keeps what the apiserver stores in this shape, so a status that does
    not parse was not written by this operator; it is then recomputed from scratch.
    """
    try:
        return DeepSeekDeploymentStatus.model_validate(raw or {})
    except ValidationError:
        return DeepSeekDeploymentStatus()
