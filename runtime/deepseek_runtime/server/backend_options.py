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
from ..capabilities import NATIVE, PARALLEL_QUANTIZATIONS
from ..checkpoint.config import ConfigError, DeepseekConfig
from ..checkpoint.model_config import load_model_config
from ..checkpoint.quantization import QUANTIZATION_CHOICES
from .config import ServerConfig


def check_native_supported(config: ServerConfig) -> None:
    """Refuse what the native engine cannot honour (ValueError, exit 2), never ignore it.

    The limits are :data:`deepseek_runtime.capabilities.NATIVE`, the table the operator's
    planner reads too, and the checkpoint's own shape (``config.json``, when the model
    directory has one): a layout the model cannot be split into is refused here, before
    any rank starts.
    """
    use_vllm = "; --engine vllm serves it"
    ranks = config.tensor_parallel_size * config.pipeline_parallel_size
    if ranks > 1 and config.quantization not in (None, *PARALLEL_QUANTIZATIONS):
        raise ValueError(
            f"--quantization {config.quantization} with {ranks} parallel ranks: the native "
            f"engine's ranks load dense or FP8-block weights only; use --quantization auto "
            f"or none{use_vllm}"
        )
    _check_multi_node(config, ranks)
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
    if (Path(config.model) / "config.json").is_file():
        _check_layout_fits_model(config)


def _check_multi_node(config: ServerConfig, ranks: int) -> None:
    if config.node_rank >= config.nnodes:
        raise ValueError(
            f"--node-rank {config.node_rank}: a group of --nnodes {config.nnodes} has node "
            f"ranks 0 .. {config.nnodes - 1}"
        )
    if ranks % config.nnodes:
        raise ValueError(
            f"--nnodes {config.nnodes} must divide the group's {ranks} ranks "
            f"(--tensor-parallel-size {config.tensor_parallel_size} x "
            f"--pipeline-parallel-size {config.pipeline_parallel_size})"
        )


def _check_layout_fits_model(config: ServerConfig) -> None:
    """TP must divide the heads, the vocabulary and (with EP) the routed experts; PP may
    not be deeper than the layers."""
    try:
        model = load_model_config(config.model)
    except (ConfigError, ValueError):
        return  # the loader reports a broken config.json with its own message
    tp, pp = config.tensor_parallel_size, config.pipeline_parallel_size
    if pp > model.num_hidden_layers:
        raise ValueError(
            f"--pipeline-parallel-size {pp} is deeper than the model's "
            f"{model.num_hidden_layers} layers; use at most {model.num_hidden_layers} stages"
        )
    sizes = {
        "num_attention_heads": model.num_attention_heads,
        "vocab_size": model.vocab_size,
        "intermediate_size": model.intermediate_size,
    }
    if isinstance(model, DeepseekConfig) and model.n_routed_experts:
        key = "n_routed_experts" if config.enable_expert_parallel else "moe_intermediate_size"
        sizes[key] = (
            model.n_routed_experts
            if config.enable_expert_parallel
            else int(model.moe_intermediate_size or 0)
        )
    for field, size in sizes.items():
        if size % tp:
            raise ValueError(
                f"--tensor-parallel-size {tp} does not divide the model's {field} ({size}); "
                f"choose a divisor of {size}"
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
        cpu_kernels=config.cpu_kernels,
        tensor_parallel_size=config.tensor_parallel_size,
        enable_expert_parallel=config.enable_expert_parallel,
        pipeline_parallel_size=config.pipeline_parallel_size,
        nnodes=config.nnodes,
        node_rank=config.node_rank,
        master_addr=config.master_addr,
        master_port=config.group_master_port,
    )
