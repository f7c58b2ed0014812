"""The ``native`` backend, and the composition root of our engine.

:func:`build_engine` turns a checkpoint directory into an :class:`LLMEngine`: it loads the
:class:`~deepseek_runtime.model.runner.ModelRunner` (which is the engine's
``ModelExecutor`` as it stands, so nothing copies chunks between them), the tokenizer and
the EOS ids, and settles ``max_model_len``. It is the one place that imports both the
engine and the model, which therefore never import each other. :func:`load` is what the
server runs: it builds the engine in a worker thread (so ``/health`` keeps answering while
weights load), starts its step loop and pairs it with the checkpoint's chat tokenizer.
Used by ``backends.load_model``, the benchmarks and the tests. With more than one rank
(``tensor_parallel_size`` x ``pipeline_parallel_size``) this process becomes rank 0 of a
group it spawns and supervises (:mod:`~deepseek_runtime.backends.tp_group`; on several
nodes, with the other nodes' ``serve``) and the engine drives a
:class:`~deepseek_runtime.backends.tp_group.TensorParallelExecutor`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import torch

from ..engine import EngineConfig, LLMEngine, NativeAsyncEngine
from ..engine.kv_sizing import KVCacheSizing
from ..engine.step_io import ModelExecutor
from ..kernels.quant.int4 import DEFAULT_GROUP_SIZE
from ..model.runner import ModelRunner
from .kv_setup import load_num_blocks, size_kv_cache
from .loaded import LoadedModel
from .model_files import load_tokenizer, read_eos_token_ids
from .options import Device, Dtype, NativeEngineOptions
from .tokenizer import ServerTokenizer
from .tp_group import (
    TensorParallelExecutor,
    WorkerLaunch,
    free_port,
    run_worker_node,
    start_group,
)

log = logging.getLogger("deepseek_runtime.backends.native")

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(device: Device) -> str:
    """``auto`` becomes ``cuda`` when torch sees a GPU, else ``cpu``."""
    if device != "auto":
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_dtype(dtype: Dtype, device: str) -> str:
    """``auto`` becomes bfloat16 on CUDA and float32 elsewhere."""
    if dtype != "auto":
        return dtype
    return "bfloat16" if device == "cuda" else "float32"


def worker_launch(options: NativeEngineOptions, dtype: str, device: str) -> WorkerLaunch:
    """How this node's worker ranks are started (``dtype`` / ``device`` resolved)."""
    port = options.master_port
    if port is None:
        if options.nnodes > 1:
            raise ValueError("a multi-node group needs --master-port")
        port = free_port()
    return WorkerLaunch(
        model_dir=str(options.model_dir),
        tensor=options.tensor_parallel_size,
        pipeline=options.pipeline_parallel_size,
        expert=options.enable_expert_parallel,
        nnodes=options.nnodes,
        node_rank=options.node_rank,
        master_addr=options.master_addr,
        master_port=port,
        dtype=dtype,
        device=device,
        block_size=options.block_size,
        num_blocks=options.num_blocks,
        kv_cache_memory_bytes=options.kv_cache_memory_bytes,
        quantization=options.quantization,
    )


LEADER_WAIT_S = 900.0
"""How long a worker node waits for the leader's liveness link (it loads weights too)."""


def serve_worker_node(options: NativeEngineOptions, host: str, port: int) -> int:
    """Node ``options.node_rank > 0`` of a multi-node group: its ranks, and health only."""
    device = resolve_device(options.device)
    dtype = resolve_dtype(options.dtype, device)
    launch = worker_launch(options, dtype, device)
    return run_worker_node(launch, host, port, LEADER_WAIT_S)


def build_engine(options: NativeEngineOptions) -> tuple[LLMEngine, Any | None]:
    """Load the checkpoint and return ``(engine, tokenizer)``; the tokenizer is the
    ``tokenizers.Tokenizer`` of ``tokenizer.json``, or None when the checkpoint has none.

    ``max_model_len`` defaults to the smaller of the model's ``max_position_embeddings``
    and the KV cache capacity; a larger explicit value is a ValueError.
    """
    engine, tokenizer, _ = build_sized_engine(options)
    return engine, tokenizer


def build_sized_engine(
    options: NativeEngineOptions,
) -> tuple[LLMEngine, Any | None, KVCacheSizing]:
    """:func:`build_engine`, plus how the KV cache was sized (``backends.kv_setup``)."""
    device = resolve_device(options.device)
    dtype = resolve_dtype(options.dtype, device)
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
    group = None
    if options.tensor_parallel_size * options.pipeline_parallel_size > 1:
        group = start_group(worker_launch(options, dtype, device))
    num_blocks, kv_bytes = load_num_blocks(options, device)
    runner = ModelRunner.from_pretrained(
        options.model_dir,
        dtype=_DTYPES[dtype],
        device=device,
        block_size=options.block_size,
        num_blocks=num_blocks,
        kv_cache_memory_bytes=kv_bytes,
        debug_checks=options.debug_checks,
        quantization=options.quantization,
        quantization_group_size=(
            DEFAULT_GROUP_SIZE
            if options.quantization_group_size is None
            else options.quantization_group_size
        ),
        parallel=None if group is None else group[1],
        cpu_kernels=options.cpu_kernels,
    )
    sizing = size_kv_cache(runner, options, device, group=group is not None)
    executor: ModelExecutor = runner
    if group is not None:
        executor = TensorParallelExecutor(runner, group[0], group[1])
        log.info(
            "tensor-parallel rank loaded",
            extra={
                "rank": 0,
                "stage": 0,
                "layers": len(runner.model.layers),
                "weight_bytes": runner.resident_weight_bytes(),
            },
        )
    limit = min(int(runner.config.max_position_embeddings), runner.num_blocks * runner.block_size)
    max_model_len = options.max_model_len
    if max_model_len is None:
        max_model_len = limit
    elif max_model_len > limit:
        raise ValueError(
            f"max_model_len {max_model_len} exceeds what this model and KV cache allow ({limit})"
        )
    config = EngineConfig(
        max_model_len=max_model_len,
        max_num_seqs=options.max_num_seqs,
        max_num_batched_tokens=options.max_num_batched_tokens,
        enable_prefix_caching=options.enable_prefix_caching,
        max_waiting=options.max_waiting,
        seed=options.seed,
    )
    tokenizer = load_tokenizer(options.model_dir)
    engine = LLMEngine(
        executor,
        config,
        tokenizer=tokenizer,
        eos_token_ids=read_eos_token_ids(options.model_dir),
    )
    return engine, tokenizer, sizing


def build_async_engine(options: NativeEngineOptions) -> NativeAsyncEngine:
    """:func:`build_engine` behind the :class:`~deepseek_runtime.engine.AsyncEngine` seam
    (not started yet; ``tokenizer`` is set as :func:`build_engine` returns it)."""
    engine, tokenizer = build_engine(options)
    return NativeAsyncEngine(engine, tokenizer=tokenizer)


async def load(options: NativeEngineOptions) -> LoadedModel:
    built, hf_tokenizer, sizing = await asyncio.to_thread(build_sized_engine, options)
    engine = NativeAsyncEngine(built, tokenizer=hf_tokenizer)
    tokenizer = ServerTokenizer.from_model_dir(options.model_dir, tokenizer=engine.tokenizer)
    await engine.start()
    return LoadedModel(engine, tokenizer, kv_cache=sizing)
