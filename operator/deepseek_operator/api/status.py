"""``DeepSeekDeploymentStatus``: what the operator observed and decided.

Conditions follow the metav1.Condition shape and kstatus conventions (``Ready``,
``observedGeneration``) so Argo CD and Flux health checks understand the DSD. Condition
bookkeeping is a method on the status type; the controller calls it and patches the result.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Final, Literal

from pydantic import Field

from deepseek_operator.api.base import StatusModel

ConditionStatus = Literal["True", "False", "Unknown"]
Phase = Literal["Pending", "Planning", "Progressing", "Ready", "Degraded", "Failed"]
CONDITION_TYPES: Final = (
    "Planned",
    "Progressing",
    "Reconciling",
    "Available",
    "Degraded",
    "Ready",
    "Stalled",
    "ScalingActive",
)
"""Every condition the operator sets, in the order ``status.conditions`` lists them
(``ScalingActive``, as on an HPA, only under ``autoscaling.provider: native``)."""


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Condition(StatusModel):
    """One observation of the DSD's state (metav1.Condition)."""

    type: Annotated[str, Field(max_length=316)]
    """Condition type: Planned, Progressing, Reconciling, Available, Degraded, Ready,
    Stalled or ScalingActive."""
    status: ConditionStatus
    """True, False or Unknown."""
    reason: Annotated[str, Field(max_length=1024)] = ""
    """CamelCase reason for the last transition."""
    message: Annotated[str, Field(max_length=32768)] = ""
    """Human-readable detail: for a failed plan, what to change."""
    last_transition_time: str | None = None
    """When ``status`` last changed (RFC 3339)."""
    observed_generation: int | None = None
    """``metadata.generation`` the condition was computed from."""


class PlanStatus(StatusModel):
    """The sharding plan in effect (``deepseek_operator.planning.Plan.to_status()``)."""

    model_name: str | None = None
    """Catalog entry or config the plan was computed for."""
    engine: str | None = None
    """Engine that serves the plan: ``spec.engine.kind``, or what ``auto`` chose."""
    quantization: str | None = None
    """Weight format the plan assumes (bf16, fp8, int8, int4)."""
    gpu_product: str | None = None
    """GPU product (``nvidia.com/gpu.product``) of the chosen pool."""
    gpu_memory_mib: int | None = Field(default=None, alias="gpuMemoryMiB")
    """Memory per GPU of the chosen pool, MiB."""
    gpus_per_replica: int | None = None
    """GPUs per replica (tensor × pipeline)."""
    nodes_per_replica: int | None = None
    """Nodes per replica (the pipeline degree)."""
    tensor: int | None = None
    """Tensor-parallel degree."""
    pipeline: int | None = None
    """Pipeline-parallel degree."""
    expert: int | None = None
    """Expert-parallel degree (1: none)."""
    data: int | None = None
    """Data-parallel degree."""
    weight_bytes_per_gpu: int | None = None
    """Weight bytes on each GPU."""
    kv_cache_bytes_per_gpu: int | None = None
    """KV cache bytes on each GPU."""
    max_tokens_in_cache: int | None = None
    """Tokens the KV cache of one replica holds."""
    gpu_summary: str | None = None
    """Short form for ``kubectl get``: ``8xH200`` or ``2x8xH100``."""
    layout: str | None = None
    """Short form TPxPPxEP, e.g. ``8x2x16``."""
    reasons: list[str] = Field(default_factory=list)
    """Why each choice was made."""


class MetricResult(StatusModel):
    """One metric of one analysis run."""

    name: str
    """``rollout.canary.analysis.metrics[].name``."""
    value: float | None = None
    """The value Prometheus returned (absent when there was no data)."""
    passed: bool = False
    """True when the value is within ``max`` / ``min``."""
    message: str = ""
    """Why the metric failed (no data, Prometheus unreachable, over ``max``...)."""


class AnalysisRun(StatusModel):
    """The result of the last canary analysis run."""

    time: str
    """When the run finished (RFC 3339)."""
    passed: bool
    """True when every metric passed."""
    metrics: list[MetricResult] = Field(default_factory=list)
    """Per-metric values and verdicts."""


class CanaryStatus(StatusModel):
    """Progress of a canary rollout (set by the operator's canary driver)."""

    revision: str | None = None
    """Revision (spec hash) under test, or promoted / rolled back last."""
    stable_revision: str | None = None
    """Revision the stable workload serves."""
    step: int | None = None
    """Index of the current step in ``rollout.canary.steps``."""
    weight: int | None = None
    """Percent of traffic on the canary now (0 once promoted or failed)."""
    step_started: str | None = None
    """When the current step began (RFC 3339); its ``pause`` counts from here."""
    failures: int | None = None
    """Failed analysis runs in this rollout."""
    last_analysis: AnalysisRun | None = None
    """The last analysis run: time, per-metric values, pass or fail."""
    phase: Literal["Progressing", "Succeeded", "Failed"] | None = None
    """``Progressing`` while traffic shifts; ``Succeeded`` once promoted (the stable
    workload serves ``revision``); ``Failed`` after ``failureLimit`` failed analyses (the
    stable workload keeps the old revision until the spec changes again); unset when the
    spec went back to the stable revision and the canary was abandoned."""
    message: str | None = None
    """What happened last, for humans."""


class Recommendation(StatusModel):
    """One past decision of the native autoscaler (scale-down stabilization history)."""

    time: str
    """When it was made (RFC 3339)."""
    replicas: int
    """Replicas it asked for before stabilization."""


class AutoscalerStatus(StatusModel):
    """State of ``autoscaling.provider: native``, kept here so it survives restarts."""

    desired_replicas: int | None = None
    """Replicas the last decision wrote to the workload's scale subresource."""
    reason: str | None = None
    """CamelCase reason of the last decision (ScaleUp, ScaleDown, Panic, NoCapacity...)."""
    metric: str | None = None
    """Metric that drove the last decision (the highest desired count)."""
    message: str | None = None
    """The last decision's numbers, for humans."""
    last_time: str | None = None
    """When this decision was recorded (RFC 3339); rounds that change nothing (same
    replicas, reason, metric and panic) are not written."""
    last_scale_time: str | None = None
    """When replicas last changed (RFC 3339)."""
    panic_until: str | None = None
    """While set and in the future, the autoscaler is in panic mode: no scale-down."""
    recommendations: list[Recommendation] = Field(default_factory=list, max_length=64)
    """Recent unstabilized recommendations, newest last (within the stabilization
    window)."""


class TrackCircuit(StatusModel):
    """The circuit breaker of one track (``stable`` or ``canary``)."""

    track: str
    """``stable`` or ``canary``."""
    state: Literal["Closed", "Open", "HalfOpen"] = "Closed"
    """Closed: full traffic; Open: traffic moved away; HalfOpen: a small share returns."""
    since: str | None = None
    """When the circuit entered ``state`` (RFC 3339)."""
    error_rate_percent: float | None = None
    """Error rate measured when this state was recorded (absent without traffic)."""
    message: str | None = None
    """Why the circuit is in this state."""


class CircuitStatus(StatusModel):
    """Circuit breaker state per track (``resilience.circuitBreaker``)."""

    tracks: list[TrackCircuit] = Field(
        default_factory=list,
        max_length=2,
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["track"],
        },
    )
    """One entry per evaluated track."""
    last_time: str | None = None
    """When the states were last recorded (RFC 3339); evaluations that change no state
    are not written."""
    error: str | None = None
    """Why the last evaluation could not run (Prometheus unreachable...); absent when
    it ran."""

    def track(self, name: str) -> TrackCircuit | None:
        """The circuit of track ``name``, or None."""
        return next((t for t in self.tracks if t.track == name), None)

    def impairment(self) -> tuple[str, str] | None:
        """(reason, message) for Degraded while some track's circuit is not closed."""
        tripped = [t for t in self.tracks if t.state != "Closed"]
        if not tripped:
            return None
        reason = "CircuitOpen" if any(t.state == "Open" for t in tripped) else "CircuitHalfOpen"
        message = "; ".join(f"{t.track} track {t.state}: {t.message or ''}" for t in tripped)
        return reason, message


class DeepSeekDeploymentStatus(StatusModel):
    """Observed state of a DeepSeekDeployment."""

    observed_generation: int | None = None
    """``metadata.generation`` this status describes."""
    phase: Phase | None = None
    """One-word summary of the conditions."""
    conditions: list[Condition] = Field(
        default_factory=list,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    """Planned, Progressing, Reconciling, Available, Degraded, Ready and Stalled (the
    last three are what kstatus, Flux and Argo CD read)."""
    plan: PlanStatus | None = None
    """The sharding plan in effect."""
    replicas: int | None = None
    """Replicas that exist (scale subresource status path)."""
    ready_replicas: int | None = None
    """Replicas whose pods are all ready."""
    selector: str | None = None
    """Label selector of the serving pods (scale subresource selector path)."""
    canary: CanaryStatus | None = None
    """The running or last canary rollout (set by the canary driver)."""
    endpoint: str | None = None
    """In-cluster base URL of the OpenAI-compatible API."""
    autoscaler: AutoscalerStatus | None = None
    """The native autoscaler's last decision and history (``provider: native``)."""
    circuit: CircuitStatus | None = None
    """Circuit breaker state per track (set when ``traffic.istio`` is on)."""

    def get_condition(self, type_: str) -> Condition | None:
        """Return the condition of this type, or None."""
        return next((c for c in self.conditions if c.type == type_), None)

    def set_condition(
        self,
        type_: str,
        status: ConditionStatus | bool,
        reason: str,
        message: str = "",
        generation: int | None = None,
        *,
        now: str | None = None,
    ) -> bool:
        """Set a condition in place; ``lastTransitionTime`` moves only when status changes.

        Args:
            type_: condition type.
            status: "True"/"False"/"Unknown" or a bool.
            reason: CamelCase reason.
            message: human-readable detail.
            generation: the ``metadata.generation`` observed.
            now: timestamp to use (RFC 3339); the current time when omitted.

        Returns:
            True when anything about the condition changed.
        """
        value: ConditionStatus = (
            ("True" if status else "False") if isinstance(status, bool) else status
        )
        old = self.get_condition(type_)
        if old is None:
            self.conditions = [
                *self.conditions,
                Condition(
                    type=type_,
                    status=value,
                    reason=reason,
                    message=message,
                    last_transition_time=now or _now(),
                    observed_generation=generation,
                ),
            ]
            return True
        changed = (old.status, old.reason, old.message, old.observed_generation) != (
            value,
            reason,
            message,
            generation,
        )
        if old.status != value or old.last_transition_time is None:
            old.last_transition_time = now or _now()
        old.status, old.reason, old.message = value, reason, message
        old.observed_generation = generation
        return changed

    def is_true(self, type_: str) -> bool:
        """True when the condition exists with status True."""
        cond = self.get_condition(type_)
        return cond is not None and cond.status == "True"

    def planned(self) -> bool:
        """True when the last planning pass found a plan (``Planned=True``)."""
        return self.is_true("Planned")

    def plan_recorded(self) -> bool:
        """True once a planning pass recorded its outcome (``Planned``, True or False)."""
        return self.get_condition("Planned") is not None

    def keep_conditions(self, types: tuple[str, ...] = CONDITION_TYPES) -> None:
        """Keep only conditions of ``types``, in that order (a stable ``status.conditions``)."""
        rank = {t: i for i, t in enumerate(types)}
        self.conditions = sorted(
            (c for c in self.conditions if c.type in rank), key=lambda c: rank[c.type]
        )
