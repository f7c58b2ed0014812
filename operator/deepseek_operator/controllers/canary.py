"""The canary state machine: the next ``status.canary`` from facts (pure, no I/O).

Called by :mod:`.reconcile` on every pass of a DSD (with ``analysis=None``: start or
restart a canary when the spec revision changed) and by the canary timer in
:mod:`.handlers` (with the result of one analysis run: count a failure, advance a step,
promote). Rendering reads the result: while ``phase == Progressing`` the canary workload
``<name>-canary`` serves ``weight`` percent; ``Failed`` keeps the old stable workload::

          spec revision != stable revision (and a stable workload serves)
    (none) ─────────────────────────────────────> Progressing(step 0)
    Progressing(i) ── analysis passed, pause of step i over ──> Progressing(i+1)
    Progressing(last) ── analysis passed, pause over ─────────> Succeeded (promote)
    Progressing ── failures reach failureLimit ───────────────> Failed (weight 0)
    any phase ── spec revision differs from the canary's ─────> Progressing(step 0)
    Progressing / Failed ── spec back on the stable revision ──> phase unset (abandoned)
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from deepseek_operator.api import CanaryStatus, RolloutSpec
from deepseek_operator.api.status import AnalysisRun
from deepseek_operator.api.validation import duration_seconds

from .events import EventSpec


@dataclass(frozen=True, slots=True)
class CanaryInputs:
    """Facts one decision needs.

    Attributes:
        rollout: ``spec.rollout``.
        revision: the spec revision now (``render.spec_revision``).
        stable_revision: the revision the live stable workload serves; None when no
            stable workload exists yet (the first rollout is never a canary).
        current: ``status.canary`` as recorded, or None.
        now: the time of the decision (RFC 3339, UTC).
        analysis: the result of an analysis run made now, or None (no run this pass).
    """

    rollout: RolloutSpec
    revision: str
    stable_revision: str | None
    current: CanaryStatus | None
    now: str
    analysis: AnalysisRun | None = None


@dataclass(frozen=True, slots=True)
class CanaryDecision:
    """The next ``status.canary`` (None: leave it absent) and the Events to post."""

    status: CanaryStatus | None
    events: list[EventSpec] = field(default_factory=list)


def parse_time(value: str) -> dt.datetime:
    """Parse an RFC 3339 UTC timestamp (``2026-01-01T00:00:00Z``)."""
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def seconds_between(start: str | None, end: str) -> float:
    """Seconds from ``start`` to ``end`` (infinite when ``start`` is unknown)."""
    if start is None:
        return float("inf")
    return (parse_time(end) - parse_time(start)).total_seconds()


def analysis_due(current: CanaryStatus | None, interval: str, now: str) -> bool:
    """True when a running canary's next analysis is due (``interval`` since the last)."""
    if current is None or current.phase != "Progressing":
        return False
    last = current.last_analysis.time if current.last_analysis else current.step_started
    return seconds_between(last, now) >= duration_seconds(interval)


def _summary(run: AnalysisRun) -> str:
    parts = []
    for m in run.metrics:
        value = "no value" if m.value is None else f"{m.value:g}"
        parts.append(f"{m.name}={value}" + ("" if m.passed else f" ({m.message})"))
    return ", ".join(parts) or "no metrics"


def _start(inputs: CanaryInputs, stable: str) -> CanaryDecision:
    first = inputs.rollout.canary.steps[0]
    status = CanaryStatus(
        revision=inputs.revision,
        stable_revision=stable,
        step=0,
        weight=first.weight,
        step_started=inputs.now,
        failures=0,
        phase="Progressing",
        message=f"canary of revision {inputs.revision} started at {first.weight}% "
        f"(stable revision {stable})",
    )
    return CanaryDecision(status, [EventSpec("Normal", "CanaryStarted", status.message or "")])


def decide(inputs: CanaryInputs) -> CanaryDecision:
    """The next canary status for ``inputs`` (see the module diagram)."""
    cur = inputs.current
    if inputs.rollout.strategy != "Canary":
        return CanaryDecision(cur)
    stable = inputs.stable_revision
    if stable is None:  # first rollout: the stable workload is created directly
        return CanaryDecision(cur)
    if cur is not None and cur.revision == inputs.revision and cur.phase is not None:
        if cur.phase != "Progressing":
            return CanaryDecision(cur)  # Succeeded or Failed for this revision: settled
        return _progress(inputs, cur)
    if stable == inputs.revision:  # nothing new to roll out
        if cur is not None and cur.phase in {"Progressing", "Failed"}:
            message = f"spec is back on the stable revision {stable}: canary of {cur.revision} "
            message += "abandoned"
            update = {"phase": None, "weight": 0, "message": message}
            return CanaryDecision(
                cur.model_copy(update=update), [EventSpec("Normal", "CanaryAbandoned", message)]
            )
        return CanaryDecision(cur)
    return _start(inputs, stable)


def _progress(inputs: CanaryInputs, cur: CanaryStatus) -> CanaryDecision:
    run = inputs.analysis
    if run is None:
        return CanaryDecision(cur)
    steps = inputs.rollout.canary.steps
    limit = inputs.rollout.canary.analysis.failure_limit
    step = cur.step or 0
    nxt = cur.model_copy(update={"last_analysis": run})
    if not run.passed:
        failures = (cur.failures or 0) + 1
        if failures >= limit:
            message = (
                f"canary of revision {cur.revision} failed: {failures} failed analyses "
                f"(failureLimit {limit}); last: {_summary(run)}; stable revision "
                f"{cur.stable_revision} keeps serving"
            )
            nxt = nxt.model_copy(
                update={"failures": failures, "phase": "Failed", "weight": 0, "message": message}
            )
            return CanaryDecision(nxt, [EventSpec("Warning", "CanaryFailed", message[:1000])])
        message = f"analysis failed ({failures}/{limit}): {_summary(run)}"
        nxt = nxt.model_copy(update={"failures": failures, "message": message})
        return CanaryDecision(nxt, [EventSpec("Warning", "AnalysisFailed", message[:1000])])
    pause = duration_seconds(steps[step].pause)
    if seconds_between(cur.step_started, inputs.now) < pause:
        return CanaryDecision(
            nxt.model_copy(update={"message": f"analysis passed: {_summary(run)}"})
        )
    if step + 1 < len(steps):
        weight = steps[step + 1].weight
        message = (
            f"step {step + 1} of {len(steps)}: {weight}% of traffic on revision {cur.revision}"
        )
        nxt = nxt.model_copy(
            update={
                "step": step + 1,
                "weight": weight,
                "step_started": inputs.now,
                "message": message,
            }
        )
        return CanaryDecision(nxt, [EventSpec("Normal", "CanaryStepAdvanced", message)])
    message = f"revision {cur.revision} promoted to stable (was {cur.stable_revision})"
    nxt = nxt.model_copy(
        update={
            "phase": "Succeeded",
            "weight": 0,
            "stable_revision": cur.revision,
            "message": message,
        }
    )
    return CanaryDecision(nxt, [EventSpec("Normal", "CanaryPromoted", message)])
