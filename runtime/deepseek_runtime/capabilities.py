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
    max_tensor_parallel: int | None
    """None: any degree that divides the model's heads, vocabulary and experts."""
    max_pipeline_parallel: int | None
    """None: up to the model's layer count."""
    expert_parallel: bool
    multi_node: bool
    parallel_verified_on: tuple[str, ...] = ()
    """Devices on which layouts of more than one rank have been run end to end. The
    planner's ``engine.kind: auto`` gives an engine multi-GPU layouts only when ``cuda`` is
    listed; an explicit ``kind`` gets everything above, with a status reason saying so."""


NATIVE = EngineCapabilities(
    engine="native",
    architectures=tuple(MODEL_ARCHITECTURES),
    quantizations=("auto", "none", "fp8", "int8", "int4"),
    kv_cache_dtypes=("auto",),
    max_tensor_parallel=None,
    max_pipeline_parallel=None,
    expert_parallel=True,
    multi_node=True,
    parallel_verified_on=("cpu",),
)
"""Tensor, expert and pipeline parallelism and multi-node groups are served by the code
(``backends.tp_group``) and checked through the OpenAI API against one process on CPU
over gloo (TP 2 and 4, EP 2, PP 2, TP 2 x PP 2, two ``serve`` nodes on loopback). On
CUDA the same code picks NCCL and ``cuda:<local rank>``, but no multi-GPU run has been
made (no GPUs where it was built), so ``cuda`` is not in ``parallel_verified_on``: the
planner's ``auto`` keeps native on one GPU per replica and chooses vLLM for larger
layouts, while ``kind: native`` may still ask for them. Quantized int8 / int4 weights
are not sharded: with more than one rank only ``auto`` / ``none`` / ``fp8`` load."""

PARALLEL_QUANTIZATIONS = ("auto", "none", "fp8")
"""``--quantization`` values a group of more than one rank loads: shards are dense or
FP8-block (``fp8`` only keeps an FP8-block checkpoint's own weights); int8 / int4
re-quantized weights are not sharded."""
