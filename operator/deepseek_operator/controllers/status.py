"""Status and conditions of a DeepSeekDeployment, computed from facts (pure).

Called by :mod:`.reconcile` (after planning and applying) and by the workload
watch in :mod:`.handlers` (when a Deployment or LeaderWorkerSet changes).  The
result is a complete ``status`` dict; :func:`status_patch` reduces it to the keys
that differ from the live status, so an unchanged status is never written.

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

import copy
from dataclasses import dataclass, field
from typing import Any

CONDITION_TYPES = ("Planned", "Progressing", "Available", "Degraded", "Ready", "Stalled")


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


def _condition(
    previous: dict[str, dict[str, Any]],
    ctype: str,
    *,
    status: bool,
    reason: str,
    message: str,
    generation: int,
    now: str,
) -> dict[str, Any]:
    value = "True" if status else "False"
    old = previous.get(ctype)
    since = old.get("lastTransitionTime") if old and old.get("status") == value else None
    return {
        "type": ctype,
        "status": value,
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
        "lastTransitionTime": since or now,
    }


def compute_status(
    current: dict[str, Any] | None,
    generation: int,
    outcome: PlanOutcome | None,
    workloads: list[WorkloadState],
    *,
    now: str,
    endpoint: str | None = None,
    selector: str | None = None,
    canary: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Compute the full status.

    Args:
        current: the live ``status`` (may be None or empty).
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
    """
    cur = copy.deepcopy(current or {})
    previous = {c["type"]: c for c in cur.get("conditions") or [] if "type" in c}
    out: dict[str, Any] = {k: v for k, v in cur.items() if k not in {"conditions"}}
    conds: list[dict[str, Any]] = []

    def add(ctype: str, value: bool, reason: str, message: str, generation: int) -> None:
        conds.append(
            _condition(
                previous,
                ctype,
                status=value,
                reason=reason,
                message=message,
                generation=generation,
                now=now,
            )
        )

    if outcome is not None:
        observed_gen = generation
        planned_ok, p_reason, p_msg = outcome.ok, outcome.reason, outcome.message
        if outcome.ok:
            out["plan"] = outcome.plan
    else:
        observed_gen = int(cur.get("observedGeneration") or 0)
        old = previous.get("Planned")
        planned_ok = bool(old and old.get("status") == "True")
        p_reason = str(old.get("reason", "Pending")) if old else "Pending"
        p_msg = str(old.get("message", "")) if old else "waiting for the first plan"
        observed_gen = int(old.get("observedGeneration", observed_gen)) if old else observed_gen
    out["observedGeneration"] = observed_gen
    add("Planned", planned_ok, p_reason, p_msg, observed_gen)

    desired = sum(w.desired for w in workloads)
    ready = sum(min(w.ready, w.desired) for w in workloads)
    updated = sum(w.updated for w in workloads)
    rolled_out = bool(workloads) and all(w.observed for w in workloads) and updated >= desired
    complete = rolled_out and ready >= desired
    stalled = any(w.stalled for w in workloads)
    out["replicas"] = sum(w.current for w in workloads)
    out["readyReplicas"] = ready
    selectors = [w.selector for w in workloads if w.selector]
    if selector:
        out["selector"] = selector
    elif selectors and not out.get("selector"):
        out["selector"] = selectors[0]
    if endpoint:
        out["endpoint"] = endpoint
    if canary is not None:
        out["canary"] = canary
    canary_phase = (out.get("canary") or {}).get("phase")
    canary_msg = str((out.get("canary") or {}).get("message") or "")
    gen = observed_gen

    if canary_phase == "Progressing":
        add("Progressing", True, "CanaryProgressing", canary_msg, gen)
    elif not workloads:
        why = "no workload yet" if planned_ok else "nothing is deployed until the spec plans"
        add("Progressing", planned_ok, "Creating", why, gen)
    elif complete:
        msg = f"{ready}/{desired} replicas ready and up to date"
        add("Progressing", False, "RolloutComplete", msg, gen)
    else:
        msg = f"{updated}/{desired} replicas updated, {ready}/{desired} ready"
        add("Progressing", True, "RollingOut", msg, gen)

    available = ready >= 1 or (bool(workloads) and desired == 0)
    a_msg = f"{ready} replica(s) serving" if ready else "no replica is ready yet"
    a_reason = "ReplicasReady" if available else "NoReadyReplicas"
    add("Available", available, a_reason, a_msg, gen)

    was_available = (previous.get("Available") or {}).get("status") == "True"
    if workloads and not planned_ok:
        deg = (True, "PlanFailed", f"serving the previous plan; {p_msg}")
    elif stalled:
        deg = (True, "ProgressDeadlineExceeded", "a workload stopped making rollout progress")
    elif was_available and not available:
        deg = (True, "ReplicasLost", "all replicas became unready after serving")
    elif canary_phase == "Failed":
        deg = (True, "CanaryFailed", canary_msg)
    else:
        deg = (False, "AsExpected", "no impairment detected")
    add("Degraded", deg[0], deg[1], deg[2], gen)

    if not planned_ok:
        r = (False, p_reason, p_msg)
    elif complete:
        r = (True, "Ready", f"{ready}/{desired} replicas ready")
    else:
        r = (False, "WaitingForReplicas", f"{ready}/{desired} replicas ready")
    add("Ready", r[0], r[1], r[2], gen)
    # kstatus: Stalled=True makes Flux/kpt report Failed at once instead of timing out
    attempted = outcome is not None or "Planned" in previous
    if not planned_ok and attempted:
        add("Stalled", True, p_reason, p_msg, gen)
    else:
        add(
            "Stalled", False, "Planned" if planned_ok else "Pending", "planning is not blocked", gen
        )
    out["conditions"] = conds

    if not planned_ok and not workloads:
        out["phase"] = "Failed" if outcome is not None or "Planned" in previous else "Pending"
    elif deg[0]:
        out["phase"] = "Degraded"
    elif r[0]:
        out["phase"] = "Ready"
    else:
        out["phase"] = "Progressing"
    return out


def status_patch(current: dict[str, Any] | None, desired: dict[str, Any]) -> dict[str, Any]:
    """The top-level status keys whose values differ; empty when nothing changed."""
    cur = current or {}
    return {k: v for k, v in desired.items() if cur.get(k) != v}
