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
from .config import ServerConfig


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
        enable_prefix_caching=config.enable_prefix_caching,
        max_waiting=config.max_waiting,
        debug_checks=config.debug_checks,
        quantization=config.quantization or "auto",
        quantization_group_size=config.quantization_group_size,
    )
