"""``spec.autoscaling`` and ``spec.rollout``: how many replicas, and how a change ships.

Autoscaling follows the HPA / KEDA vocabulary (``minReplicas``, ``maxReplicas``, metric
targets); canary rollouts follow Flagger (``steps`` of traffic ``weight`` with ``pause``,
an ``analysis`` with ``interval``, ``failureLimit`` and metric bounds).
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from deepseek_operator.api import defaults
from deepseek_operator.api.base import ApiModel
from deepseek_operator.api.validation import (
    AUTOSCALING_RULES,
    CANARY_STEP_RULES,
    DURATION_PATTERN,
    Rule,
    check_strictly_rising,
)

Duration = Annotated[str, Field(max_length=32, pattern=DURATION_PATTERN)]
MetricType = Literal["QueueDepth", "KVCacheUsage", "TTFT", "GPUUtilization"]


class ScalingMetric(ApiModel):
    """One autoscaling signal and its per-replica target."""

    type: MetricType
    """``QueueDepth``: requests waiting per replica (``vllm:num_requests_waiting``);
    ``KVCacheUsage``: fraction of KV cache in use, 0-1 (``vllm:kv_cache_usage_perc``);
    ``TTFT``: p95 time to first token in seconds; ``GPUUtilization``: percent (DCGM)."""
    target: Annotated[float, Field(gt=0, le=100000)]
    """Target value per replica; scale out above it."""


def _default_metrics() -> list[ScalingMetric]:
    return [ScalingMetric(type="QueueDepth", target=defaults.QUEUE_DEPTH_TARGET)]


class NativeAutoscalingSpec(ApiModel):
    """Tuning of ``provider: native``, the operator's own autoscaler (Knative KPA style)."""

    interval: Duration = defaults.NATIVE_INTERVAL
    """Time between decisions (Prometheus queries and scale writes)."""
    stable_window: Duration = defaults.NATIVE_STABLE_WINDOW
    """Metrics are averaged over this window for the normal (stable) decision; a panic
    lasts at least this long after the load last crossed the panic threshold."""
    panic_window: Duration = defaults.NATIVE_PANIC_WINDOW
    """Short window whose average detects a load surge; keep it at two or more scrape
    intervals so it holds samples."""
    panic_threshold_percent: Annotated[float, Field(gt=100, le=10000)] = (
        defaults.NATIVE_PANIC_THRESHOLD_PERCENT
    )
    """Panic when the panic-window load needs this percent of the ready replicas; while
    panicking replicas are only added, never removed."""


class AutoscalingSpec(ApiModel):
    """Replica autoscaling. Mutually exclusive with ``spec.replicas``."""

    cel_rules: ClassVar[tuple[Rule, ...]] = AUTOSCALING_RULES

    min_replicas: Annotated[int, Field(ge=0, le=1000)] = defaults.MIN_REPLICAS
    """Fewest replicas (0 allows scale to zero with KEDA)."""
    max_replicas: Annotated[int, Field(ge=1, le=1000)] = defaults.MAX_REPLICAS
    """Most replicas."""
    provider: Literal["hpa", "keda", "native"] = "hpa"
    """``hpa``: autoscaling/v2 HorizontalPodAutoscaler on Pods metrics served by
    prometheus-adapter; ``keda``: a KEDA ScaledObject with Prometheus triggers;
    ``native``: the operator reads Prometheus itself and writes the workload's scale
    subresource (no adapter; startup-aware: pods still loading count as capacity,
    unschedulable pods stop scale-up)."""
    native: NativeAutoscalingSpec = Field(default_factory=NativeAutoscalingSpec)
    """Windows and period of ``provider: native`` (ignored by the other providers)."""
    metrics: Annotated[list[ScalingMetric], Field(min_length=1, max_length=8)] = Field(
        default_factory=_default_metrics
    )
    """Signals to scale on; the highest desired count wins."""
    scale_down_stabilization_seconds: Annotated[int, Field(ge=0, le=3600)] = (
        defaults.SCALE_DOWN_STABILIZATION_SECONDS
    )
    """How long a lower recommendation must persist before replicas are removed."""

    @model_validator(mode="after")
    def _min_not_above_max(self) -> AutoscalingSpec:
        if self.min_replicas > self.max_replicas:
            raise ValueError(AUTOSCALING_RULES[0].message)
        return self


class CanaryStep(ApiModel):
    """One canary step: send ``weight`` percent of traffic, then wait ``pause``."""

    weight: Annotated[int, Field(ge=0, le=100)]
    """Percent of traffic sent to the new revision."""
    pause: Duration = "5m"
    """Time at this weight, with analysis passing, before the next step."""


def _default_steps() -> list[CanaryStep]:
    return [CanaryStep(weight=w, pause=p) for w, p in defaults.CANARY_STEPS]


class AnalysisMetric(ApiModel):
    """A check the canary must pass at every analysis interval."""

    name: Annotated[str, Field(min_length=1, max_length=63)]
    """Name shown in events and status."""
    builtin: Literal["error-rate", "latency-p95", "ttft-p95"] | None = None
    """A ready-made query over the canary's vLLM-compatible metrics (percent errors,
    seconds)."""
    query: Annotated[str, Field(max_length=4096)] | None = None
    """A PromQL query returning one number; ``{{ namespace }}``, ``{{ name }}`` and
    ``{{ revision }}`` are substituted."""
    max: float | None = None
    """Fail when the value is above this."""
    min: float | None = None
    """Fail when the value is below this."""

    @model_validator(mode="after")
    def _one_source(self) -> AnalysisMetric:
        if (self.builtin is None) == (self.query is None):
            raise ValueError(f"analysis metric {self.name!r}: set exactly one of builtin, query")
        return self


def _default_analysis_metrics() -> list[AnalysisMetric]:
    return [
        AnalysisMetric(
            name="error-rate", builtin="error-rate", max=defaults.ALERT_ERROR_RATE_PERCENT
        ),
        AnalysisMetric(
            name="latency-p95",
            builtin="latency-p95",
            max=defaults.ALERT_P95_LATENCY_MILLISECONDS / 1000,
        ),
    ]


class CanaryAnalysis(ApiModel):
    """Metric analysis run during a canary."""

    interval: Duration = defaults.ANALYSIS_INTERVAL
    """Time between analysis runs."""
    failure_limit: Annotated[int, Field(ge=1, le=100)] = defaults.ANALYSIS_FAILURE_LIMIT
    """Failed runs after which the canary is rolled back."""
    metrics: Annotated[list[AnalysisMetric], Field(max_length=16)] = Field(
        default_factory=_default_analysis_metrics
    )
    """Checks run at each interval."""


class CanarySpec(ApiModel):
    """Progressive traffic shifting to a new revision."""

    steps: Annotated[list[CanaryStep], Field(min_length=1, max_length=20)] = Field(
        default_factory=_default_steps,
        json_schema_extra={"x-kubernetes-validations": [r.to_k8s() for r in CANARY_STEP_RULES]},
    )
    """Traffic steps, strictly rising; after the last one the canary is promoted."""
    analysis: CanaryAnalysis = Field(default_factory=CanaryAnalysis)
    """Checks that gate every step."""

    @field_validator("steps")
    @classmethod
    def _rising(cls, steps: list[CanaryStep]) -> list[CanaryStep]:
        check_strictly_rising([s.weight for s in steps])
        return steps


class RollingUpdateSpec(ApiModel):
    """Rolling update bounds of the serving workload."""

    max_surge: int | Annotated[str, Field(max_length=8, pattern=r"^[0-9]+%$")] = 1
    """Extra replicas during an update (number or percent). GPUs must be free for them."""
    max_unavailable: int | Annotated[str, Field(max_length=8, pattern=r"^[0-9]+%$")] = 0
    """Replicas that may be down during an update (number or percent)."""


class RolloutSpec(ApiModel):
    """How a spec change reaches the serving pods."""

    strategy: Literal["RollingUpdate", "Canary"] = "RollingUpdate"
    """``RollingUpdate`` replaces pods in place; ``Canary`` starts the new revision beside
    the old one and shifts traffic by ``canary.steps`` (needs ``traffic.istio``)."""
    rolling_update: RollingUpdateSpec = Field(default_factory=RollingUpdateSpec)
    """Surge and unavailability bounds for ``RollingUpdate``."""
    canary: CanarySpec = Field(default_factory=CanarySpec)
    """Canary steps and analysis for ``Canary``."""
