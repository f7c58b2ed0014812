"""Maps the validated ``ServerConfig`` onto the chosen backend's typed options.

The one place where the server's flat option list meets the backends: each backend sees
only the fields it uses, under its own names (``backends.options``). Pure; called by
``server.cli`` before the server starts and by the unit tests.
"""

from __future__ import annotations

from pathlib import Path

from ..backends.options import (
    BackendOptions,
    NativeEngineOptions,
    TritonEngineOptions,
    VLLMEngineOptions,
)
from ..capabilities import CPU_MAX_TENSOR_PARALLEL, NATIVE
from ..checkpoint.quantization import QUANTIZATION_CHOICES
from .config import ServerConfig


def check_native_supported(config: ServerConfig) -> None:
    """Refuse what the native engine cannot honour (ValueError, exit 2), never ignore it.

    The limits are :data:`deepseek_runtime.capabilities.NATIVE`, the table the operator's
    planner reads too.
    """
    use_vllm = "; --engine vllm serves it"
    _check_native_tensor_parallel(config, use_vllm)
    if config.tensor_parallel_size > 1 and config.quantization in ("int8", "int4"):
        raise ValueError(
            f"--quantization {config.quantization} with --tensor-parallel-size "
            f"{config.tensor_parallel_size}: the native engine's tensor-parallel ranks load "
            f"dense or FP8-block weights only; use --quantization auto or none{use_vllm}"
        )
    if config.pipeline_parallel_size > NATIVE.max_pipeline_parallel:
        raise ValueError(
            f"--pipeline-parallel-size {config.pipeline_parallel_size}: the native engine runs "
            f"at most {NATIVE.max_pipeline_parallel} pipeline stage(s) today{use_vllm}"
        )
    if config.enable_expert_parallel and not NATIVE.expert_parallel:
        raise ValueError(
            f"--enable-expert-parallel: the native engine has no expert parallelism yet{use_vllm}"
        )
    if config.kv_cache_dtype not in NATIVE.kv_cache_dtypes:
        raise ValueError(
            f"--kv-cache-dtype {config.kv_cache_dtype}: the native engine caches in the model "
            f"dtype (auto){use_vllm}"
        )
    if config.quantization is not None and config.quantization not in QUANTIZATION_CHOICES:
        raise ValueError(
            f"--quantization {config.quantization}: the native engine takes "
            f"{', '.join(QUANTIZATION_CHOICES)}"
        )


def _check_native_tensor_parallel(config: ServerConfig, use_vllm: str) -> None:
    """TP above :data:`NATIVE`'s limit runs on CPU only, up to ``CPU_MAX_TENSOR_PARALLEL``."""
    tp = config.tensor_parallel_size
    if tp <= NATIVE.max_tensor_parallel:
        return
    if config.device != "cpu" or tp > CPU_MAX_TENSOR_PARALLEL:
        raise ValueError(
            f"--tensor-parallel-size {tp}: the native engine runs at most "
            f"{NATIVE.max_tensor_parallel} tensor-parallel rank(s) on a GPU today, and up to "
            f"{CPU_MAX_TENSOR_PARALLEL} with --device cpu (gloo){use_vllm}"
        )


def backend_options(config: ServerConfig) -> BackendOptions:
    """The options of ``config.engine``'s backend, taken from ``config``."""
    if config.engine == "vllm":
        return VLLMEngineOptions(
            model_dir=config.model,
            served_model_name=config.model_name,
            dtype=config.dtype,
            max_model_len=config.max_model_len,
            max_num_seqs=config.max_num_seqs,
            max_num_batched_tokens=config.max_num_batched_tokens,
            block_size=config.block_size,
            num_blocks=config.num_blocks,
            kv_cache_memory_bytes=config.kv_cache_memory_bytes,
            enable_prefix_caching=config.enable_prefix_caching,
            tensor_parallel_size=config.tensor_parallel_size,
            pipeline_parallel_size=config.pipeline_parallel_size,
            enable_expert_parallel=config.enable_expert_parallel,
            quantization=config.quantization,
            kv_cache_dtype=config.kv_cache_dtype,
            gpu_memory_utilization=config.gpu_memory_utilization,
        )
    if config.engine == "triton":
        return TritonEngineOptions(
            model_dir=config.model,
            url=config.triton_url,
            remote_model=config.triton_model or config.model_name,
            max_model_len=config.max_model_len,
        )
    check_native_supported(config)
    return NativeEngineOptions(
        model_dir=Path(config.model),
        dtype=config.dtype,
        device=config.device,
        max_model_len=config.max_model_len,
        max_num_seqs=config.max_num_seqs,
        max_num_batched_tokens=config.max_num_batched_tokens,
        block_size=config.block_size,
        num_blocks=config.num_blocks,
        kv_cache_memory_bytes=config.kv_cache_memory_bytes,
        gpu_memory_utilization=config.gpu_memory_utilization,
        cpu_kv_cache_fraction=config.cpu_kv_cache_fraction,
        enable_prefix_caching=config.enable_prefix_caching,
        max_waiting=config.max_waiting,
        debug_checks=config.debug_checks,
        quantization=config.quantization or "auto",
        quantization_group_size=config.quantization_group_size,
        tensor_parallel_size=config.tensor_parallel_size,
        enable_expert_parallel=config.enable_expert_parallel,
    )
