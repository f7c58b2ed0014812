"""``DeepSeekDeploymentSpec``: the desired state a platform engineer writes.

Composes the per-concern models of this package. Called by the controller and CLI
through ``DeepSeekDeploymentSpec.model_validate(obj["spec"])``.
"""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import Field, model_validator

from deepseek_operator.api.base import ApiModel
from deepseek_operator.api.engine import EngineSpec
from deepseek_operator.api.model import ModelSpec
from deepseek_operator.api.placement import ParallelismSpec, PlacementSpec
from deepseek_operator.api.scaling import AutoscalingSpec, RolloutSpec
from deepseek_operator.api.serving import MonitoringSpec, ServingSpec
from deepseek_operator.api.traffic import ResilienceSpec, TrafficSpec
from deepseek_operator.api.validation import SPEC_RULES, Rule


class DeepSeekDeploymentSpec(ApiModel):
    """Desired state of a DeepSeek model deployment: the model, the engine, where it runs
    and how it scales, ships, routes and is watched."""

    cel_rules: ClassVar[tuple[Rule, ...]] = SPEC_RULES

    model: ModelSpec
    """The served model and where its weights come from."""
    engine: EngineSpec = Field(default_factory=EngineSpec)
    """The inference engine and its tuning."""
    placement: PlacementSpec = Field(default_factory=PlacementSpec)
    """GPU node selection: products, memory, node labels, tolerations, affinity. The planner
    considers only nodes matching all of it, then picks the pool (product, memory, GPUs per
    node) that fits best; `kubectl describe dsd` shows why (docs/planner.md)."""
    parallelism: ParallelismSpec = Field(default_factory=ParallelismSpec)
    """Sharding of one replica: tensor (GPUs within a node), pipeline (nodes), expert and
    data degrees. Omitted degrees are planned from the model's shape and the chosen pool;
    explicit ones are honoured or rejected with the reason on the Planned condition."""
    replicas: Annotated[int, Field(ge=0, le=1000)] | None = None
    """Fixed replica count (the scale subresource's spec path, so ``kubectl scale dsd``
    works). 1 when neither this nor ``autoscaling`` is set."""
    autoscaling: AutoscalingSpec | None = None
    """Replica autoscaling; mutually exclusive with ``replicas``."""
    rollout: RolloutSpec = Field(default_factory=RolloutSpec)
    """Rollout strategy for spec changes."""
    traffic: TrafficSpec = Field(default_factory=TrafficSpec)
    """Routing, timeouts, retries and network policy."""
    resilience: ResilienceSpec = Field(default_factory=ResilienceSpec)
    """Outlier ejection, connection limits and probes."""
    serving: ServingSpec = Field(default_factory=ServingSpec)
    """API keys, rate limits and content filter."""
    monitoring: MonitoringSpec = Field(default_factory=MonitoringSpec)
    """ServiceMonitor, alert rules and the Prometheus address."""

    @model_validator(mode="after")
    def _cross_field(self) -> DeepSeekDeploymentSpec:
        if self.replicas is not None and self.autoscaling is not None:
            raise ValueError(SPEC_RULES[0].message)
        if self.rollout.strategy == "Canary" and self.traffic.istio is None:
            raise ValueError(SPEC_RULES[1].message)
        auth = self.serving.auth
        if (auth.jwt or auth.roles_ref) and self.engine.kind not in ("native", "triton"):
            raise ValueError(SPEC_RULES[2].message)
        return self

    def desired_replicas(self) -> int:
        """Replicas to run now: ``replicas``, else ``autoscaling.minReplicas``, else 1."""
        if self.replicas is not None:
            return self.replicas
        if self.autoscaling is not None:
            return self.autoscaling.min_replicas
        return 1
