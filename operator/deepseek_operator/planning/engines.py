"""What each engine can serve: the table the planner checks a plan against.

The operator image carries no torch, so it cannot import ``deepseek_runtime``; the native
row is therefore kept here as plain data, equal field by field to
``deepseek_runtime.capabilities.NATIVE`` (checked by
``tests/contract/test_planner_engine_table.py``). ``deepseek-runtime serve --engine native``
exits 2 for anything outside that row, so a plan outside it would only crash-loop.

The native row says what the runtime's code serves (any TP that divides the model, PP up
to its layers, expert parallelism, multi-node groups) and where layouts of more than one
rank were run end to end: on CPU over gloo only, because no multi-GPU machine was at hand
when it was built. So ``engine.kind: auto`` plans native with the narrower
:data:`NATIVE_AUTO` (one GPU per replica) and hands larger layouts to vLLM, which runs
them on GPUs every day; an explicit ``kind: native`` gets the whole row, and the plan's
reasons say that its multi-GPU path (NCCL) is unverified.

``vllm`` lists what upstream vLLM serves for the catalog's architectures; ``triton``
fronts a remote Triton Inference Server whose own limits the operator cannot see, so it
is constrained by architecture only. ``None`` as a maximum degree means "no limit".

Pure data plus :func:`unsupported`, which names the first thing an engine cannot serve.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Final

from deepseek_operator.planning.memory import Sharding

CATALOG_ARCHITECTURES: Final = ("deepseek_v3", "deepseek_v2", "qwen2", "llama")
"""``config.json`` ``model_type`` values of the built-in catalog."""


@dataclass(frozen=True, slots=True)
class EngineCapabilities:
    """One engine's limits, in the planner's vocabulary (the runtime's field names)."""

    engine: str
    architectures: tuple[str, ...]
    """``config.json`` ``model_type`` values it loads."""
    quantizations: tuple[str, ...]
    """``spec.model.quantization`` values it honours (``auto`` = the checkpoint's own)."""
    kv_cache_dtypes: tuple[str, ...]
    """``spec.engine.kvCache.dtype`` values."""
    max_tensor_parallel: int | None
    max_pipeline_parallel: int | None
    expert_parallel: bool
    multi_node: bool
    parallel_verified_on: tuple[str, ...] = ()
    """Devices on which layouts of more than one rank have been run end to end."""

    def admits(self, s: Sharding, nodes: int) -> bool:
        """True when this engine runs sharding ``s`` spanning ``nodes`` nodes."""
        return (
            (self.max_tensor_parallel is None or s.tensor <= self.max_tensor_parallel)
            and (self.max_pipeline_parallel is None or s.pipeline <= self.max_pipeline_parallel)
            and (self.expert_parallel or s.expert == 1)
            and (self.multi_node or nodes == 1)
            and (s.data == 1 or not self.one_gpu_only)
        )

    @property
    def one_gpu_only(self) -> bool:
        """True when the engine serves a replica on a single GPU only."""
        return self.max_tensor_parallel == 1 and self.max_pipeline_parallel == 1


NATIVE: Final = EngineCapabilities(
    engine="native",
    architectures=CATALOG_ARCHITECTURES,
    quantizations=("auto", "none", "fp8", "int8", "int4"),
    kv_cache_dtypes=("auto",),
    max_tensor_parallel=None,
    max_pipeline_parallel=None,
    expert_parallel=True,
    multi_node=True,
    parallel_verified_on=("cpu",),
)


def auto_row(caps: EngineCapabilities) -> EngineCapabilities:
    """What ``engine.kind: auto`` may give ``caps``: all of it once its parallel layouts ran
    on GPUs, else one GPU per replica."""
    if "cuda" in caps.parallel_verified_on:
        return caps
    return replace(
        caps,
        max_tensor_parallel=1,
        max_pipeline_parallel=1,
        expert_parallel=False,
        multi_node=False,
    )


NATIVE_AUTO: Final = auto_row(NATIVE)
"""The native row as ``engine.kind: auto`` uses it (see the module docstring)."""
VLLM: Final = EngineCapabilities(
    engine="vllm",
    architectures=CATALOG_ARCHITECTURES,
    # int8: W8A16 through compressed-tensors; int4: AWQ, GPTQ or compressed-tensors.
    quantizations=("auto", "none", "fp8", "int8", "int4"),
    kv_cache_dtypes=("auto", "fp8"),
    max_tensor_parallel=None,
    max_pipeline_parallel=None,
    expert_parallel=True,
    multi_node=True,
    parallel_verified_on=("cuda",),
)
# Triton's own limits live on the remote server: only the architecture is checked here.
TRITON: Final = replace(VLLM, engine="triton")
ENGINES: Final = {c.engine: c for c in (NATIVE, VLLM, TRITON)}


def unsupported(
    caps: EngineCapabilities, *, model_type: str, quantization: str, kv_cache_dtype: str
) -> tuple[str, str] | None:
    """``(spec field, why)`` for the first model option ``caps`` cannot serve, else None."""
    if model_type not in caps.architectures:
        return "spec.model", (
            f"{caps.engine} does not load model_type {model_type!r} "
            f"(it loads {', '.join(caps.architectures)})"
        )
    if quantization not in caps.quantizations:
        return "spec.model.quantization", (
            f"{caps.engine} does not serve quantization {quantization} "
            f"(it serves {', '.join(caps.quantizations)})"
        )
    if kv_cache_dtype not in caps.kv_cache_dtypes:
        return "spec.engine.kvCache.dtype", (
            f"{caps.engine} caches KV only as {', '.join(caps.kv_cache_dtypes)}, "
            f"not {kv_cache_dtype}"
        )
    return None


def unsupported_parallelism(
    caps: EngineCapabilities, *, tensor: int | None, pipeline: int | None, expert: int | None
) -> tuple[str, str] | None:
    """``(spec field, why)`` for an explicit ``spec.parallelism`` degree ``caps`` cannot run."""
    max_tp, max_pp = caps.max_tensor_parallel, caps.max_pipeline_parallel
    if tensor is not None and max_tp is not None and tensor > max_tp:
        return "spec.parallelism.tensor", (
            f"{caps.engine} runs at most {caps.max_tensor_parallel} tensor-parallel "
            f"rank(s) today, not {tensor}"
        )
    if pipeline is not None and max_pp is not None and pipeline > max_pp:
        return "spec.parallelism.pipeline", (
            f"{caps.engine} runs at most {caps.max_pipeline_parallel} pipeline stage(s) "
            f"today, not {pipeline}"
        )
    if expert is not None and expert > 1 and not caps.expert_parallel:
        return "spec.parallelism.expert", f"{caps.engine} has no expert parallelism yet"
    return None


def limits_text(caps: EngineCapabilities) -> str:
    """``native serves one GPU per replica today`` or the degrees it is limited to."""
    if caps.one_gpu_only:
        return f"{caps.engine} serves one GPU per replica today"
    parts = []
    if caps.max_tensor_parallel is not None:
        parts.append(f"tensor ≤ {caps.max_tensor_parallel}")
    if caps.max_pipeline_parallel is not None:
        parts.append(f"pipeline ≤ {caps.max_pipeline_parallel}")
    if not caps.expert_parallel:
        parts.append("no expert parallelism")
    if not caps.multi_node:
        parts.append("one node per replica")
    return f"{caps.engine} serves " + (", ".join(parts) or "any layout")
