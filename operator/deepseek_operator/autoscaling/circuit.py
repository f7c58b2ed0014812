"""The per-track circuit breaker state machine (pure, no I/O).

Called by :mod:`deepseek_operator.controllers.circuit_breaker` at every evaluation with the
error rate Prometheus reported for one track (``stable`` or ``canary``) over
``resilience.circuitBreaker.window``; the result is stored in ``status.circuit`` (so it
survives operator restarts) and read by :func:`deepseek_operator.render.istio.route_weights`
to move that track's traffic::

    Closed   ── error rate > threshold ──────────────────────> Open      (traffic moved away)
    Open     ── coolDown elapsed ────────────────────────────> HalfOpen  (halfOpenPercent back)
    HalfOpen ── error rate > threshold ──────────────────────> Open      (cool-down restarts)
    HalfOpen ── under the threshold for closeAfter ──────────> Closed    (full traffic)

No traffic (no error rate) changes nothing: an open track gets no requests, and an idle
half-open track has not proven itself healthy yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

State = Literal["Closed", "Open", "HalfOpen"]


@dataclass(frozen=True, slots=True)
class CircuitPolicy:
    """``resilience.circuitBreaker`` in numbers (percent and seconds)."""

    threshold_percent: float
    cool_down: float
    close_after: float


@dataclass(frozen=True, slots=True)
class TrackState:
    """One track's circuit: its state and when it entered it (seconds)."""

    state: State = "Closed"
    since: float | None = None


@dataclass(frozen=True, slots=True)
class Transition:
    """The next state and, when it changed, why (for the Event)."""

    next: TrackState
    changed: bool
    reason: str
    """CamelCase: CircuitOpened, CircuitHalfOpen, CircuitReopened, CircuitClosed, or the
    unchanged state's name."""
    message: str


def step(
    current: TrackState, error_rate: float | None, now: float, policy: CircuitPolicy
) -> Transition:
    """The next circuit state of one track.

    Args:
        current: the recorded state (``Closed`` with no ``since`` when never evaluated).
        error_rate: percent 5xx over the window; None when the track had no traffic.
        now: seconds, the same epoch as ``current.since``.
        policy: threshold and timings.
    """
    limit = policy.threshold_percent
    since = current.since if current.since is not None else now
    rate = "no traffic" if error_rate is None else f"error rate {error_rate:.2f}%"
    over = error_rate is not None and error_rate > limit
    if current.state == "Closed":
        if over:
            return Transition(
                TrackState("Open", now),
                True,
                "CircuitOpened",
                f"{rate} above {limit:g}%: circuit open, traffic moved away",
            )
        return Transition(TrackState("Closed", since), False, "Closed", f"{rate}: closed")
    if current.state == "Open":
        if now - since >= policy.cool_down:
            return Transition(
                TrackState("HalfOpen", now),
                True,
                "CircuitHalfOpen",
                f"cool-down of {policy.cool_down:g}s over: half-open, a share of traffic returns",
            )
        return Transition(
            TrackState("Open", since), False, "Open", f"open since {now - since:.0f}s"
        )
    if over:
        return Transition(
            TrackState("Open", now),
            True,
            "CircuitReopened",
            f"{rate} above {limit:g}% while half-open: circuit open again",
        )
    if error_rate is not None and now - since >= policy.close_after:
        return Transition(
            TrackState("Closed", now),
            True,
            "CircuitClosed",
            f"{rate} under {limit:g}% for {policy.close_after:g}s: circuit closed",
        )
    return Transition(TrackState("HalfOpen", since), False, "HalfOpen", f"{rate}: half-open")
