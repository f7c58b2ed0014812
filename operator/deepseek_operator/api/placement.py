"""``spec.placement`` and ``spec.parallelism``: where replicas run and how they are sharded.

Placement narrows the GPU pools the planner may choose from; the planner then picks the
pool that fits best and the smallest tensor × pipeline degree that holds the model.
Tolerations and affinity use the core/v1 shapes users already write for pods.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, Field, model_validator

from deepseek_operator.api.base import ApiModel
from deepseek_operator.api.validation import LIST_SET, PARALLELISM_RULES, Rule, unique_items

LabelValue = Annotated[str, Field(max_length=63)]


class Toleration(ApiModel):
    """A core/v1 Toleration, copied onto the serving pods."""

    key: Annotated[str, Field(max_length=317)] | None = None
    """Taint key; empty with ``operator: Exists`` tolerates every taint."""
    operator: Literal["Exists", "Equal"] = "Equal"
    """``Equal`` matches ``value``; ``Exists`` matches any value."""
    value: LabelValue | None = None
    """Taint value for ``operator: Equal``."""
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    """Taint effect to tolerate; every effect when omitted."""
    toleration_seconds: Annotated[int, Field(ge=0)] | None = None
    """For ``NoExecute``: how long the pod stays after the taint appears."""


class GpuSelector(ApiModel):
    """Which GPU products a replica may use."""

    products: Annotated[
        list[Annotated[str, Field(max_length=128)]],
        Field(max_length=16),
        AfterValidator(unique_items),
    ] = Field(default_factory=list, json_schema_extra=LIST_SET)
    """Allowed GPU products, matched against the ``nvidia.com/gpu.product`` node label by
    name tokens: ``H100`` matches ``NVIDIA-H100-80GB-HBM3``, ``A100-80GB`` matches
    ``NVIDIA-A100-SXM4-80GB``. Any product when empty."""
    min_memory_gib: Annotated[int, Field(ge=1, le=4096)] | None = Field(
        default=None, alias="minMemoryGiB"
    )
    """Smallest memory per GPU, in GiB (from the ``nvidia.com/gpu.memory`` label)."""
    max_gpus_per_replica: Annotated[int, Field(ge=1, le=1024)] | None = None
    """Upper bound on GPUs per replica; the planner fails with the reason when the model
    needs more."""


class PlacementSpec(ApiModel):
    """GPU node selection for the serving pods."""

    gpu: GpuSelector = Field(default_factory=GpuSelector)
    """GPU product constraints."""
    node_selector: Annotated[dict[str, LabelValue], Field(max_length=32)] = Field(
        default_factory=dict
    )
    """Node labels every serving pod requires (added to the operator's own)."""
    tolerations: Annotated[list[Toleration], Field(max_length=32)] = Field(default_factory=list)
    """Tolerations for the serving pods. ``nvidia.com/gpu:NoSchedule`` is always tolerated."""
    affinity: dict[str, Any] | None = None
    """A core/v1 Affinity merged into the pods' affinity (kept verbatim)."""
    priority_class_name: Annotated[str, Field(max_length=253)] | None = None
    """PriorityClass of the serving pods."""


class ParallelismSpec(ApiModel):
    """Sharding of one replica. Omitted degrees are chosen by the planner."""

    cel_rules: ClassVar[tuple[Rule, ...]] = PARALLELISM_RULES

    tensor: Annotated[int, Field(ge=1, le=64)] | None = None
    """Tensor-parallel degree (GPUs sharing each layer, within one node). Must divide the
    attention head count. Chosen as the smallest that fits when omitted."""
    pipeline: Annotated[int, Field(ge=1, le=64)] | None = None
    """Pipeline-parallel degree: nodes per replica, each holding a slice of the layers.
    1 unless the model does not fit one node."""
    expert: Annotated[int, Field(ge=1, le=1024)] | None = None
    """Expert-parallel degree for mixture-of-experts models: routed experts are spread over
    this many GPUs instead of being sliced. ``1`` disables expert parallelism."""
    data: Annotated[int, Field(ge=1, le=64)] = 1
    """Data-parallel attention groups inside one replica (vLLM ``--data-parallel-size``)."""

    @model_validator(mode="after")
    def _expert_matches_tensor(self) -> ParallelismSpec:
        ep, tp = self.expert, self.tensor
        if ep is not None and ep != 1 and tp is not None and ep % tp and tp % ep:
            raise ValueError(PARALLELISM_RULES[0].message)
        return self
