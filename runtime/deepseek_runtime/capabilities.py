"""What the native engine can serve: the runtime's half of the operator/runtime contract.

The operator's planner keeps the same table as plain data
(``deepseek_operator.planning.engines``, because the operator image carries no torch);
``tests/contract/test_engine_capabilities.py`` checks that the two agree and that the
runtime really accepts what the table lists. Options outside the table are refused by
``deepseek-runtime serve`` with exit code 2, never ignored.

Pure data; imports only the checkpoint layer's list of architectures.
"""

from __future__ import annotations

from dataclasses import dataclass

from deepseek_runtime.checkpoint.model_config import MODEL_ARCHITECTURES


@dataclass(frozen=True, slots=True)
class EngineCapabilities:
    """One engine's limits, in the planner's vocabulary."""

    engine: str
    architectures: tuple[str, ...]
    """``config.json`` ``model_type`` values it loads."""
    quantizations: tuple[str, ...]
    """``spec.model.quantization`` values it honours (``auto`` = the checkpoint's own)."""
    kv_cache_dtypes: tuple[str, ...]
    """``spec.engine.kvCache.dtype`` values."""
    max_tensor_parallel: int
    max_pipeline_parallel: int
    expert_parallel: bool
    multi_node: bool


NATIVE = EngineCapabilities(
    engine="native",
    architectures=tuple(MODEL_ARCHITECTURES),
    quantizations=("auto", "none", "fp8", "int8", "int4"),
    kv_cache_dtypes=("auto",),
    max_tensor_parallel=1,
    max_pipeline_parallel=1,
    expert_parallel=False,
    multi_node=False,
)

CPU_MAX_TENSOR_PARALLEL = 2
"""Tensor-parallel ranks ``serve --engine native --device cpu`` runs on one node (gloo),
checked through the OpenAI API against TP=1. Not in :data:`NATIVE`, which the planner
reads for GPU pods: TP over NCCL on CUDA has not been run yet, so the planner still gives
native one GPU per replica."""
