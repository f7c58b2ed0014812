"""Giving a loaded :class:`ModelRunner` its KV cache: decide the size, allocate, log.

``backends.native`` loads the weights with a placeholder cache (:func:`load_num_blocks`:
the final size when ``--num-blocks`` / ``--kv-cache-memory-bytes`` fix it, else just the
blocks the profiling batch needs), then :func:`size_kv_cache` applies the rules of
``engine.kv_sizing`` to what ``backends.kv_profile`` measured and reallocates the cache.

Tensor-parallel ranks must all hold the same number of blocks (rank 0's KV manager hands
out the block ids every rank writes). Rank 0 decides the budget: all ranks meet at a
barrier once their weights are loaded (so the host memory rank 0 reads is what is left
after every shard), rank 0 broadcasts its per-rank budget, every rank fits its own
blocks in it (pipeline stages may hold different numbers of layers), and an all-reduce
takes the smallest count (:func:`follow_rank0` is the workers' side).
"""

from __future__ import annotations

import logging
from dataclasses import replace

import torch
import torch.distributed as dist

from ..engine.kv_sizing import (
    KVCacheOptionError,
    KVCacheSizing,
    KVSource,
    blocks_for,
    bytes_per_block,
    check_fits,
    cpu_kv_budget,
    gpu_kv_budget,
    read_host_memory,
    scheduler_cap_blocks,
)
from ..model.runner import ModelRunner
from .kv_profile import dummy_batch_blocks, profile_cuda
from .options import NativeEngineOptions

log = logging.getLogger("deepseek_runtime.backends.kv_cache")

PLACEHOLDER_BLOCKS = 1
"""What a rank loads with before its size is known (CPU, and tensor-parallel workers)."""

_OPTION: dict[KVSource, str] = {
    "num_blocks": "--num-blocks",
    "kv_cache_memory_bytes": "--kv-cache-memory-bytes",
    "gpu_memory_utilization": "--gpu-memory-utilization",
    "cpu_kv_cache_fraction": "--cpu-kv-cache-fraction",
}


def load_num_blocks(options: NativeEngineOptions, device: str) -> tuple[int | None, int | None]:
    """``(num_blocks, kv_cache_memory_bytes)`` for ``ModelRunner.from_pretrained``."""
    if options.num_blocks is not None or options.kv_cache_memory_bytes is not None:
        return options.num_blocks, options.kv_cache_memory_bytes
    if device == "cuda":
        return (
            dummy_batch_blocks(
                options.max_num_batched_tokens, options.max_num_seqs, options.block_size
            ),
            None,
        )
    return PLACEHOLDER_BLOCKS, None


def runner_bytes_per_block(runner: ModelRunner) -> int:
    """Bytes of one block of ``runner``'s cache as allocated (its layers, its heads)."""
    layers, _, width = runner.kv_cache.shape
    return bytes_per_block(layers, runner.block_size, width, runner.kv_cache.element_size())


def reallocate(runner: ModelRunner, num_blocks: int) -> None:
    """Replace ``runner``'s cache by a zeroed one of ``num_blocks`` blocks."""
    if num_blocks == runner.num_blocks:
        return
    layers, _, width = runner.kv_cache.shape
    dtype, device = runner.kv_cache.dtype, runner.kv_cache.device
    runner.kv_cache = torch.empty(0, dtype=dtype, device=device)  # free the old one first
    if device.type == "cuda":
        torch.cuda.empty_cache()
    runner.kv_cache = torch.zeros(
        layers, num_blocks * runner.block_size, width, dtype=dtype, device=device
    )
    runner.num_blocks = num_blocks


def decide(runner: ModelRunner, options: NativeEngineOptions, device: str) -> KVCacheSizing:
    """The size the options and the measured memory give ``runner`` (nothing allocated)."""
    per_block = runner_bytes_per_block(runner)
    bs = runner.block_size
    dtype = str(runner.kv_cache.dtype).removeprefix("torch.")

    def sized(blocks: int, source: KVSource, budget: int, cap: int | None = None) -> KVCacheSizing:
        return KVCacheSizing(blocks, bs, per_block, source, budget, dtype, cap)

    if options.num_blocks is not None:
        return sized(runner.num_blocks, "num_blocks", runner.num_blocks * per_block)
    if options.kv_cache_memory_bytes is not None:
        return sized(runner.num_blocks, "kv_cache_memory_bytes", options.kv_cache_memory_bytes)
    if device == "cuda":
        profile = profile_cuda(runner, options.max_num_batched_tokens, options.max_num_seqs)
        log.info("gpu memory profiled", extra={"profile": profile})
        budget = gpu_kv_budget(profile, options.gpu_memory_utilization)
        return sized(blocks_for(budget, per_block), "gpu_memory_utilization", budget)
    available = read_host_memory()
    ranks = options.tensor_parallel_size * options.pipeline_parallel_size
    budget = cpu_kv_budget(available, options.cpu_kv_cache_fraction, ranks // options.nnodes)
    max_len = options.max_model_len or int(runner.config.max_position_embeddings)
    cap = scheduler_cap_blocks(options.max_num_seqs, max_len, bs)
    blocks = blocks_for(budget, per_block)
    return sized(min(blocks, cap), "cpu_kv_cache_fraction", budget, cap if cap < blocks else None)


def size_kv_cache(
    runner: ModelRunner, options: NativeEngineOptions, device: str, *, group: bool = False
) -> KVCacheSizing:
    """Decide, check and allocate ``runner``'s cache; log the result.

    ``group``: this is rank 0 of a tensor-parallel group whose workers wait in
    :func:`follow_rank0`. The cache must hold one sequence of ``--max-model-len`` tokens
    (the model's positions when memory decides the size and no length is given), else
    :class:`~deepseek_runtime.engine.kv_sizing.KVCacheTooSmallError`.
    """
    follows = group and options.num_blocks is None and options.kv_cache_memory_bytes is None
    if follows and device == "cuda":  # the dummy batch would need every rank to join it
        raise KVCacheOptionError(
            "--gpu-memory-utilization with several ranks: the native engine measures one "
            "GPU's activations only today; give --kv-cache-memory-bytes (per rank) or "
            "--num-blocks"
        )
    if follows:
        dist.barrier()  # every shard is loaded: the host memory read next is what is left
    sizing = decide(runner, options, device)
    if follows:
        cap = sizing.cap_blocks if sizing.cap_blocks is not None else sizing.num_blocks
        _broadcast(sizing.budget_bytes, cap)
        sizing = replace(sizing, num_blocks=_agree(runner, sizing.num_blocks))
    max_len = options.max_model_len
    if max_len is None and sizing.source in ("gpu_memory_utilization", "cpu_kv_cache_fraction"):
        max_len = int(runner.config.max_position_embeddings)
    check_fits(sizing, max_len or 2, _OPTION[sizing.source])
    reallocate(runner, sizing.num_blocks)
    log.info("kv cache allocated", extra=sizing.log_fields())
    return sizing


def _broadcast(budget: int | None, cap: int | None) -> tuple[int, int]:
    box: list[tuple[int, int] | None] = [None if budget is None else (budget, cap or 0)]
    dist.broadcast_object_list(box, src=0)
    value = box[0]
    if value is None:
        raise RuntimeError("rank 0 sent no KV budget")
    return value


def _agree(runner: ModelRunner, num_blocks: int) -> int:
    """The smallest block count of all ranks (pipeline stages may differ in layers)."""
    count = torch.tensor([num_blocks], dtype=torch.int64, device=runner.device)
    dist.all_reduce(count, op=dist.ReduceOp.MIN)
    return int(count.item())


def follow_rank0(runner: ModelRunner) -> int:
    """A worker's side of :func:`size_kv_cache` (for workers launched with neither
    ``--num-blocks`` nor ``--kv-cache-memory-bytes``): meet at the barrier, take rank 0's
    budget, fit this rank's blocks in it, agree on the group's smallest count, allocate.
    A count too small to serve makes rank 0 exit, which ends this worker too."""
    dist.barrier()
    budget, cap = _broadcast(None, None)
    num_blocks = _agree(runner, min(blocks_for(budget, runner_bytes_per_block(runner)), cap))
    reallocate(runner, max(PLACEHOLDER_BLOCKS, num_blocks))
    return num_blocks
