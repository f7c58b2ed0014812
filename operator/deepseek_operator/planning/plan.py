"""The planner's output (:class:`Plan`) and its failure (:class:`PlanningError`).

A plan is a pydantic model so it serialises into ``status.plan`` (camelCase, see
:meth:`Plan.to_status`) and into the CLI's JSON and YAML output unchanged. Every plan and
every error carries the reasons behind it, in the order they were decided.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


class PlanningError(ValueError):
    """The spec cannot be served on this cluster; ``message`` says what to change."""

    def __init__(
        self, message: str, reasons: list[str] | None = None, field: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reasons = list(reasons or [])
        self.field = field
        """Spec path (``spec.parallelism.tensor``) the message is about, when one is."""


class Plan(BaseModel):
    """How one replica of a DeepSeekDeployment is sharded and where it runs."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)

    model_name: str
    """Architecture the plan was computed for (catalog name or config)."""
    engine: str = "native"
    """Engine that serves the plan (``native``, ``vllm`` or ``triton``): ``spec.engine.kind``,
    or what ``auto`` chose."""
    reasoning_parser: str | None = None
    """Reasoning parser the engine runs (``deepseek_r1`` for R1 and its distills)."""
    tool_call_parser: str | None = None
    """Tool-call parser the engine runs (``deepseek_v3`` for V3 and R1)."""
    quantization: str
    """Weight format in GPU memory: bf16, fp8, int8 or int4."""
    kv_cache_dtype: str
    """KV cache element type: bf16 or fp8."""
    gpu_product: str
    """``nvidia.com/gpu.product`` of the chosen pool."""
    gpu_memory_mib: int = Field(alias="gpuMemoryMiB")
    """Memory per GPU in the chosen pool, MiB."""
    gpus_per_node: int
    """GPUs on each node of the chosen pool."""
    gpus_per_replica: int
    """GPUs in one replica: tensor × pipeline × data."""
    nodes_per_replica: int
    """Nodes one replica spans (its pipeline stages)."""
    tensor: int
    """Tensor-parallel degree."""
    pipeline: int
    """Pipeline-parallel degree."""
    expert: int
    """Expert-parallel degree (1: experts sliced like other weights)."""
    data: int
    """Data-parallel attention groups in a replica."""
    weight_bytes_per_gpu: int
    """Weights on the busiest GPU."""
    kv_cache_bytes_per_gpu: int
    """KV cache on each GPU."""
    kv_bytes_per_token: int
    """KV cache bytes one GPU keeps per token."""
    max_tokens_in_cache: int
    """Tokens the KV cache of one replica holds."""
    max_full_length_sequences: int
    """Concurrent ``maxModelLen`` sequences that fit."""
    checkpoint_bytes: int
    """Size of all weights in the served format (sizes the startup probe and cache)."""
    node_selector: dict[str, str] = Field(default_factory=dict)
    """Labels pinning pods to the chosen pool."""
    replica_capacity: int = 0
    """Replicas the chosen pool can hold at once."""
    reasons: list[str] = Field(default_factory=list)
    """Why each choice was made, in order."""

    @property
    def multi_node(self) -> bool:
        """True when a replica spans nodes (rendered as a LeaderWorkerSet)."""
        return self.nodes_per_replica > 1

    @property
    def gpus_per_pod(self) -> int:
        """GPUs requested by each pod (one pod per node)."""
        return self.gpus_per_replica // self.nodes_per_replica

    @property
    def short_product(self) -> str:
        """The product without its vendor prefix, e.g. ``H100-80GB-HBM3``."""
        return self.gpu_product.removeprefix("NVIDIA-").removeprefix("NVIDIA ")

    @property
    def gpu_summary(self) -> str:
        """``8xH200`` for one node, ``2x8xH100-80GB-HBM3`` for two."""
        per_pod = f"{self.gpus_per_pod}x{self.short_product}"
        return per_pod if self.nodes_per_replica == 1 else f"{self.nodes_per_replica}x{per_pod}"

    @property
    def layout(self) -> str:
        """``TPxPPxEP``, e.g. ``8x2x8``."""
        return f"{self.tensor}x{self.pipeline}x{self.expert}"

    def to_status(self) -> dict[str, Any]:
        """The ``status.plan`` object (camelCase, matching ``api.status.PlanStatus``)."""
        keys = (
            "model_name",
            "engine",
            "quantization",
            "gpu_product",
            "gpu_memory_mib",
            "gpus_per_replica",
            "nodes_per_replica",
            "tensor",
            "pipeline",
            "expert",
            "data",
            "weight_bytes_per_gpu",
            "kv_cache_bytes_per_gpu",
            "max_tokens_in_cache",
        )
        out = self.model_dump(by_alias=True, include=set(keys))
        out["gpuSummary"] = self.gpu_summary
        out["layout"] = self.layout
        out["reasons"] = list(self.reasons)
        return out
