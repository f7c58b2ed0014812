"""The per-track circuit breaker state machine: table tests of every transition
(deepseek_operator.autoscaling.circuit)."""

from __future__ import annotations

import pytest

from deepseek_operator.autoscaling.circuit import CircuitPolicy, TrackState, step

POLICY = CircuitPolicy(threshold_percent=5.0, cool_down=60.0, close_after=30.0)


@pytest.mark.parametrize(
    ("state", "since", "rate", "now", "want", "want_since", "reason"),
    [
        ("Closed", None, 1.0, 100, "Closed", 100, "Closed"),
        ("Closed", 10, 5.0, 100, "Closed", 10, "Closed"),  # at the threshold: not above
        ("Closed", 10, 30.0, 100, "Open", 100, "CircuitOpened"),
        ("Closed", 10, None, 100, "Closed", 10, "Closed"),  # no traffic: nothing known
        ("Open", 100, None, 159, "Open", 100, "Open"),  # cooling down
        ("Open", 100, 50.0, 159, "Open", 100, "Open"),
        ("Open", 100, None, 160, "HalfOpen", 160, "CircuitHalfOpen"),
        ("HalfOpen", 160, 20.0, 170, "Open", 170, "CircuitReopened"),
        ("HalfOpen", 160, 0.0, 180, "HalfOpen", 160, "HalfOpen"),  # healthy, not long enough
        ("HalfOpen", 160, None, 200, "HalfOpen", 160, "HalfOpen"),  # idle proves nothing
        ("HalfOpen", 160, 2.0, 190, "Closed", 190, "CircuitClosed"),
    ],
)
def test_transitions(
    *,
    state: str,
    since: float | None,
    rate: float | None,
    now: float,
    want: str,
    want_since: float,
    reason: str,
) -> None:
    t = step(TrackState(state, since), rate, now, POLICY)  # type: ignore[arg-type]
    assert (t.next.state, t.next.since, t.reason) == (want, want_since, reason)
    assert t.changed == (want != state)


def test_full_cycle_over_time() -> None:
    s, reasons = TrackState(), []
    for now, rate in [(0, 0.5), (15, 40.0), (30, None), (75, None), (80, 1.0), (110, 0.0)]:
        t = step(s, rate, float(now), POLICY)
        s = t.next
        if t.changed:
            reasons.append(t.reason)
    assert reasons == ["CircuitOpened", "CircuitHalfOpen", "CircuitClosed"]
    assert s.state == "Closed"


def test_messages_carry_the_numbers() -> None:
    t = step(TrackState(), 12.345, 1.0, POLICY)
    assert t.message == "error rate 12.35% above 5%: circuit open, traffic moved away"
