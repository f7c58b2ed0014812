"""The native autoscaler's decision: desired replicas from load, pods and history (pure).

Called by :mod:`deepseek_operator.controllers.autoscaler` once per interval with facts it
read from Prometheus and the apiserver. The rules, in order::

    per metric   desired_m = ceil(total / target)                (QueueDepth: a sum)
                 desired_m = ceil(ready * value / target)        (ratios: KV, TTFT, GPU)
    stable       the highest desired_m over the stable-window averages (which metric: why)
    panic        panic-window desired >= threshold x ready  ->  panic for a stable window;
                 while panicking: max(current, panic desired), never lower
    on the way   pods scheduled or loading weights count as capacity: while any start,
                 scale-up waits unless even ready+starting is below the panic threshold
    no capacity  pods that cannot be scheduled (no free GPUs) stop any scale-up
    stabilize    scale-down only to the highest recommendation of the last
                 ``scaleDownStabilizationSeconds`` (flapping load does not flap replicas)
    clamp        [max(minReplicas, 1), maxReplicas]

Why ``ready`` for the ratio metrics: only ready pods report load, and counting pods still
loading as if they served would halve the estimate and then run away when they join
(AIBrix issue 2670). Why hold scale-up while pods start: the queue grows while a 600 GiB
checkpoint loads, and without the hold every interval would add replicas for the same load.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Final, Literal

MetricKind = Literal["QueueDepth", "KVCacheUsage", "TTFT", "GPUUtilization"]
TOTAL_METRICS: Final = frozenset({"QueueDepth"})
"""Metrics whose value is a total over the pods (divided by the per-replica target)."""


@dataclass(frozen=True, slots=True)
class MetricSample:
    """One metric as Prometheus reported it, averaged over the two windows.

    Attributes:
        type: the ``autoscaling.metrics[].type``.
        target: its per-replica target.
        stable: the stable-window value (None: no data).
        panic: the panic-window value (None: no data).
    """

    type: MetricKind
    target: float
    stable: float | None
    panic: float | None


@dataclass(frozen=True, slots=True)
class PodCounts:
    """The workload's pods.

    Attributes:
        current: replicas the workload asks for now (its scale ``spec.replicas``).
        ready: pods Ready (serving).
        starting: pods scheduled on a node but not Ready yet (pulling, loading weights).
        unschedulable: pods the scheduler could not place (no free GPUs).
    """

    current: int
    ready: int
    starting: int = 0
    unschedulable: int = 0


@dataclass(frozen=True, slots=True)
class Recommendation:
    """One past unstabilized recommendation: at ``time`` (seconds), ``replicas``."""

    time: float
    replicas: int


@dataclass(frozen=True, slots=True)
class Policy:
    """The spec's bounds and windows, in seconds."""

    min_replicas: int
    max_replicas: int
    stable_window: float = 60.0
    panic_window: float = 15.0
    panic_threshold: float = 2.0
    """Ratio (200 % = 2.0) of the panic-window desired count to the ready pods."""
    scale_down_stabilization: float = 300.0


@dataclass(frozen=True, slots=True)
class DecisionInputs:
    """Everything one decision reads."""

    now: float
    """Seconds (any epoch, the same as the history's)."""
    pods: PodCounts
    samples: tuple[MetricSample, ...]
    policy: Policy
    history: tuple[Recommendation, ...] = ()
    panic_until: float | None = None
    """End of the running panic, if any (from the last decision)."""


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome: replicas to write and why."""

    desired: int
    """Replicas to write (equal to ``pods.current`` when nothing changes)."""
    current: int
    """Replicas the workload asked for before this decision."""
    reason: str
    """CamelCase: ScaleUp, ScaleDown, Panic (replicas changed or held up by a panic),
    Hold, Stabilizing, CapacityOnTheWay, NoCapacity, NoMetrics."""
    message: str
    """The numbers behind the decision, for the Event and the logs."""
    metric: str | None
    """The metric with the highest desired count (None without data)."""
    panic_until: float | None
    """End of the panic (None: not panicking)."""
    history: tuple[Recommendation, ...]
    """Recommendations to keep for the next decision (within the stabilization window)."""
    per_metric: dict[str, int] = field(default_factory=dict)
    """Stable-window desired count of each metric with data."""

    @property
    def changed(self) -> bool:
        """True when the replicas to write differ from the current ones."""
        return self.desired != self.current


def metric_desired(sample_type: str, value: float, target: float, ready: int) -> int:
    """Replicas one metric asks for: a total over the target, or a ratio times ``ready``.

    Raises:
        ValueError: for a negative or NaN value, or a target that is not positive.
    """
    if value < 0 or math.isnan(value) or target <= 0:
        raise ValueError(f"{sample_type}: value {value} / target {target} is not a load")
    if sample_type in TOTAL_METRICS:
        return math.ceil(round(value / target, 9))
    return math.ceil(round(max(ready, 1) * value / target, 9))


def _highest(
    samples: tuple[MetricSample, ...], ready: int, panic: bool
) -> tuple[int | None, str | None, dict[str, int]]:
    per: dict[str, int] = {}
    for s in samples:
        value = s.panic if panic else s.stable
        if value is None or math.isnan(value):
            continue
        per[s.type] = metric_desired(s.type, value, s.target, ready)
    if not per:
        return None, None, per
    metric = max(per, key=lambda k: per[k])
    return per[metric], metric, per


def _summary(per: dict[str, int], pods: PodCounts) -> str:
    load = ", ".join(f"{k} wants {v}" for k, v in per.items()) or "no metric data"
    return (
        f"{load}; pods: current {pods.current}, ready {pods.ready}, starting {pods.starting}, "
        f"unschedulable {pods.unschedulable}"
    )


def decide(inputs: DecisionInputs) -> Decision:
    """The desired replicas for ``inputs`` (see the module docstring for the rules)."""
    p, pods, now = inputs.policy, inputs.pods, inputs.now
    floor, ceiling = max(p.min_replicas, 1), max(p.max_replicas, 1)
    kept = tuple(r for r in inputs.history if r.time > now - p.scale_down_stabilization)

    def clamp(n: int) -> int:
        return min(max(n, floor), ceiling)

    stable, metric, per = _highest(inputs.samples, pods.ready, panic=False)
    if stable is None:
        desired = clamp(pods.current)
        message = f"no metric data: replicas kept at {desired}; {_summary(per, pods)}"
        return Decision(desired, pods.current, "NoMetrics", message, None, None, kept)
    panic_need, panic_metric, _ = _highest(inputs.samples, pods.ready, panic=True)
    panic_until = inputs.panic_until if inputs.panic_until and inputs.panic_until > now else None
    if panic_need is not None and panic_need >= p.panic_threshold * max(pods.ready, 1):
        panic_until = now + p.stable_window
    recommended = stable
    if panic_until is not None:  # panicking: the surge counts, replicas never go down
        if panic_need is not None and panic_need > stable:
            recommended, metric = panic_need, panic_metric
        recommended = max(recommended, pods.current)
    history = (*kept, Recommendation(now, clamp(recommended)))
    summary = _summary(per, pods)

    def result(desired: int, reason: str, message: str) -> Decision:
        return Decision(
            desired, pods.current, reason, message, metric, panic_until, history, dict(per)
        )

    target = clamp(recommended)
    if target > pods.current:
        if pods.unschedulable:
            return result(
                pods.current,
                "NoCapacity",
                f"{pods.unschedulable} pod(s) cannot be scheduled (no free GPUs): scale-up "
                f"to {target} held at {pods.current}; {summary}",
            )
        on_the_way = pods.ready + pods.starting
        if pods.starting and recommended < p.panic_threshold * on_the_way:
            return result(
                pods.current,
                "CapacityOnTheWay",
                f"{pods.starting} pod(s) still starting count as capacity: scale-up to "
                f"{target} waits; {summary}",
            )
        reason = "Panic" if panic_until is not None else "ScaleUp"
        return result(
            target, reason, f"{pods.current} -> {target} replicas ({metric} drives); {summary}"
        )
    if panic_until is not None:
        return result(clamp(pods.current), "Panic", f"panic mode: no scale-down; {summary}")
    desired = clamp(min(max(r.replicas for r in history), pods.current))
    if desired < pods.current:
        return result(
            desired, "ScaleDown", f"{pods.current} -> {desired} replicas ({metric}); {summary}"
        )
    if desired > pods.current:  # below minReplicas
        return result(desired, "ScaleUp", f"{pods.current} -> {desired} (minReplicas); {summary}")
    if target < desired:
        return result(
            desired,
            "Stabilizing",
            f"the load asks for {target}, held at {desired} by the scale-down "
            f"stabilization window; {summary}",
        )
    return result(desired, "Hold", f"{desired} replicas fit the load; {summary}")
