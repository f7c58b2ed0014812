"""The native autoscaler's pure decision: table tests of load steps, flapping, slow start,
no capacity, scale to min and panic (deepseek_operator.autoscaling.decide)."""

from __future__ import annotations

import pytest

from deepseek_operator.autoscaling.decide import (
    Decision,
    DecisionInputs,
    MetricSample,
    PodCounts,
    Policy,
    Recommendation,
    decide,
    metric_desired,
)

POLICY = Policy(
    min_replicas=2,
    max_replicas=10,
    stable_window=60,
    panic_window=15,
    panic_threshold=2.0,
    scale_down_stabilization=120,
)


def queue(stable: float | None, panic: float | None = None, target: float = 5) -> MetricSample:
    return MetricSample("QueueDepth", target, stable, stable if panic is None else panic)


def kv(stable: float | None, panic: float | None = None, target: float = 0.8) -> MetricSample:
    return MetricSample("KVCacheUsage", target, stable, stable if panic is None else panic)


def ttft(stable: float | None, target: float = 0.5) -> MetricSample:
    return MetricSample("TTFT", target, stable, stable)


def run(
    pods: PodCounts,
    *samples: MetricSample,
    now: float = 1000.0,
    history: tuple[Recommendation, ...] = (),
    panic_until: float | None = None,
    policy: Policy = POLICY,
) -> Decision:
    return decide(DecisionInputs(now, pods, samples, policy, history, panic_until))


@pytest.mark.parametrize(
    ("kind", "value", "target", "ready", "want"),
    [
        ("QueueDepth", 0, 5, 3, 0),
        ("QueueDepth", 12, 5, 3, 3),  # a total: 12 waiting / 5 per replica
        ("QueueDepth", 15, 5, 1, 3),  # exact multiples do not round up
        ("KVCacheUsage", 0.9, 0.8, 4, 5),  # a ratio: 4 x 0.9 / 0.8 = 4.5
        ("KVCacheUsage", 0.4, 0.8, 4, 2),
        ("TTFT", 1.0, 0.5, 2, 4),
        ("GPUUtilization", 45, 90, 0, 1),  # no ready pod reports: counted as one
    ],
)
def test_metric_desired(kind: str, value: float, target: float, ready: int, want: int) -> None:
    assert metric_desired(kind, value, target, ready) == want


def test_metric_desired_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="not a load"):
        metric_desired("QueueDepth", -1, 5, 2)
    with pytest.raises(ValueError, match="not a load"):
        metric_desired("KVCacheUsage", 0.5, 0, 2)


def test_load_step_scales_up_and_names_the_metric() -> None:
    d = run(PodCounts(current=2, ready=2), queue(30, 30), kv(0.5))
    # queue: 30 / 5 = 6 replicas beats kv: 2 x 0.5 / 0.8 = 2; 6 >= 2 x 2 ready: panic
    assert (d.desired, d.reason, d.metric) == (6, "Panic", "QueueDepth")
    assert d.per_metric == {"QueueDepth": 6, "KVCacheUsage": 2}
    assert d.panic_until == 1060.0
    assert d.changed and "2 -> 6 replicas" in d.message


def test_moderate_load_step_scales_up_without_panic() -> None:
    d = run(PodCounts(current=2, ready=2), queue(14, 14))
    assert (d.desired, d.reason, d.panic_until) == (3, "ScaleUp", None)


def test_highest_metric_wins() -> None:
    d = run(PodCounts(current=3, ready=3), queue(5), kv(0.96), ttft(0.6))
    # queue 1, kv 3 x 0.96 / 0.8 = 3.6 -> 4, ttft 3 x 0.6 / 0.5 = 3.6 -> 4; kv listed first
    assert (d.desired, d.metric) == (4, "KVCacheUsage")


def test_clamped_to_max() -> None:
    d = run(PodCounts(current=8, ready=8), queue(500, 40))
    assert (d.desired, d.reason) == (10, "ScaleUp")


def test_slow_start_counts_loading_pods_as_capacity() -> None:
    # 2 ready, 2 more loading weights; the queue grew while they load (stable wants 5)
    d = run(PodCounts(current=4, ready=2, starting=2), queue(25, 25))
    assert (d.desired, d.reason) == (4, "CapacityOnTheWay")
    assert "2 pod(s) still starting" in d.message
    # once they are ready the same load is re-judged against 4 ready pods
    d = run(PodCounts(current=4, ready=4), queue(25, 25))
    assert (d.desired, d.reason) == (5, "ScaleUp")


def test_slow_start_does_not_run_away_over_many_intervals() -> None:
    history: tuple[Recommendation, ...] = ()
    replicas = [4]
    for tick, waiting in enumerate([25, 30, 33, 35]):  # the queue grows while loading
        d = run(
            PodCounts(current=replicas[-1], ready=2, starting=replicas[-1] - 2),
            queue(waiting, waiting),
            now=1000.0 + 15 * tick,
            history=history,
        )
        history = d.history
        replicas.append(d.desired)
    assert replicas == [4, 4, 4, 4, 4]


def test_surge_beyond_capacity_on_the_way_still_scales() -> None:
    # 2 ready + 2 loading, but the surge needs 9 >= 2 x 4: loading pods are not enough
    d = run(PodCounts(current=4, ready=2, starting=2), queue(45, 45))
    assert (d.desired, d.reason) == (9, "Panic")


def test_no_capacity_stops_scale_up_with_the_cause() -> None:
    d = run(PodCounts(current=4, ready=2, starting=0, unschedulable=2), queue(50, 50))
    assert (d.desired, d.reason) == (4, "NoCapacity")
    assert "2 pod(s) cannot be scheduled (no free GPUs)" in d.message


def test_no_capacity_still_allows_scale_down() -> None:
    d = run(PodCounts(current=4, ready=2, unschedulable=2), queue(0, 0))
    assert (d.desired, d.reason) == (2, "ScaleDown")


def test_scale_to_min_after_the_stabilization_window() -> None:
    old = (Recommendation(900.0, 6),)  # 100 s ago: inside the 120 s window
    d = run(PodCounts(current=6, ready=6), queue(0, 0), history=old)
    assert (d.desired, d.reason) == (6, "Stabilizing")
    d = run(PodCounts(current=6, ready=6), queue(0, 0), history=old, now=1030.0)
    assert (d.desired, d.reason) == (2, "ScaleDown")  # 130 s later: the 6 expired; min 2
    assert [r.replicas for r in d.history] == [2]


def test_flapping_load_does_not_flap_replicas() -> None:
    history: tuple[Recommendation, ...] = ()
    current, seen = 2, []
    for tick in range(12):
        waiting = 18 if tick % 2 == 0 else 2  # 4 replicas' worth, then nearly idle
        d = run(
            PodCounts(current=current, ready=current),
            queue(waiting, waiting),
            now=1000.0 + 15 * tick,
            history=history,
        )
        history, current = d.history, d.desired
        seen.append(current)
    assert seen == [4] * 12  # up once, never back down while the load keeps returning


def test_panic_blocks_scale_down_until_it_expires() -> None:
    panic_until = 1040.0
    d = run(PodCounts(current=6, ready=6), queue(5, 5), panic_until=panic_until)
    assert (d.desired, d.reason, d.panic_until) == (6, "Panic", 1040.0)
    quiet = Policy(2, 10, scale_down_stabilization=0)
    d = run(PodCounts(6, 6), queue(5, 5), now=1041.0, panic_until=panic_until, policy=quiet)
    assert (d.desired, d.reason, d.panic_until) == (2, "ScaleDown", None)


def test_panic_window_surge_panics_even_when_stable_average_is_low() -> None:
    # the last 15 s hold a burst (panic wants 8 >= 2 x 2 ready); the 60 s average does not
    d = run(PodCounts(current=2, ready=2), queue(10, 40))
    assert (d.desired, d.reason, d.metric) == (8, "Panic", "QueueDepth")


def test_no_metrics_keeps_replicas_and_enforces_bounds() -> None:
    d = run(PodCounts(current=3, ready=3), queue(None), kv(float("nan")))
    assert (d.desired, d.reason, d.metric) == (3, "NoMetrics", None)
    d = run(PodCounts(current=0, ready=0), queue(None))
    assert (d.desired, d.reason) == (2, "NoMetrics")  # below minReplicas: brought up


def test_min_zero_still_keeps_one_replica() -> None:
    d = run(PodCounts(3, 3), queue(0, 0), policy=Policy(0, 5, scale_down_stabilization=0))
    assert (d.desired, d.reason) == (1, "ScaleDown")


def test_holds_when_load_fits() -> None:
    d = run(PodCounts(current=3, ready=3), queue(11, 11))
    assert (d.desired, d.reason, d.changed) == (3, "Hold", False)
