"""Measuring what the KV cache may have: a max-size dummy batch, and the memory it took.

The KV budget on a GPU is what is left after the weights and the largest step's
activations (``engine.kv_sizing``); the activations are measured, not guessed, by running
one step of ``max_num_batched_tokens`` prompt tokens spread over ``max_num_seqs``
sequences (vLLM's profile run) and reading ``torch.cuda.max_memory_allocated``. The
dummy batch itself is device-neutral, so its shape and its run are tested on CPU;
:func:`peak_cpu_allocation` is the CPU counterpart of the CUDA peak (torch's own
allocation events), used where a test wants a measured CPU figure. Called by ``backends.kv_setup``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..engine.kv_sizing import GpuMemoryProfile
from ..model.runner import ModelRunner, SeqChunk


def dummy_batch(
    max_num_batched_tokens: int, max_num_seqs: int, block_size: int, vocab_size: int
) -> list[SeqChunk]:
    """``max_num_batched_tokens`` prompt tokens over at most ``max_num_seqs`` sequences,
    each on blocks of its own, numbered from 0 (so the cache needs
    :func:`dummy_batch_blocks` blocks)."""
    seqs = max(1, min(max_num_seqs, max_num_batched_tokens))
    base, extra = divmod(max_num_batched_tokens, seqs)
    chunks: list[SeqChunk] = []
    next_block = 0
    for i in range(seqs):
        n = base + (1 if i < extra else 0)
        blocks = -(-n // block_size)
        tokens = [(i * 7919 + j) % vocab_size for j in range(n)]
        chunks.append(SeqChunk(tokens, 0, list(range(next_block, next_block + blocks))))
        next_block += blocks
    return chunks


def dummy_batch_blocks(max_num_batched_tokens: int, max_num_seqs: int, block_size: int) -> int:
    """Blocks :func:`dummy_batch` writes into."""
    chunks = dummy_batch(max_num_batched_tokens, max_num_seqs, block_size, 1)
    return sum(len(c.block_table) for c in chunks)


def run_dummy_batch(runner: ModelRunner, max_num_batched_tokens: int, max_num_seqs: int) -> None:
    """One max-size step through the real model (the runner's cache must hold
    :func:`dummy_batch_blocks` blocks); the logits are dropped."""
    chunks = dummy_batch(max_num_batched_tokens, max_num_seqs, runner.block_size, runner.vocab_size)
    with torch.inference_mode():
        runner.execute(chunks)


def kv_cache_tensor_bytes(runner: ModelRunner) -> int:
    cache = runner.kv_cache
    return cache.numel() * cache.element_size()


def profile_cuda(
    runner: ModelRunner, max_num_batched_tokens: int, max_num_seqs: int
) -> GpuMemoryProfile:
    """Weights, peak activations and non-torch memory of ``runner``'s GPU.

    Everything torch holds before the dummy batch, less the (small) profiling cache,
    counts as weights; the peak above it during the batch as activations; device memory
    in use beyond what torch reserved (CUDA context, NCCL, other tenants) as non-torch.
    Not run in this repository's CI (no GPU there).
    """
    device = runner.device
    torch.cuda.synchronize(device)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    run_dummy_batch(runner, max_num_batched_tokens, max_num_seqs)
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device) - before
    torch.cuda.empty_cache()
    free, total = torch.cuda.mem_get_info(device)
    non_torch = max(0, (total - free) - torch.cuda.memory_reserved(device))
    return GpuMemoryProfile(
        total=total,
        weights=before - kv_cache_tensor_bytes(runner),
        peak_activations=max(0, peak),
        non_torch=non_torch,
    )


def peak_cpu_allocation(fn: Callable[[], None]) -> int:
    """Peak bytes torch allocated on the CPU above the starting point while ``fn`` ran:
    the CPU counterpart of ``torch.cuda.max_memory_allocated``, from the allocation
    events of ``torch.profiler`` with ``profile_memory`` (replayed in time order)."""
    with torch.profiler.profile(
        activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True
    ) as prof:
        fn()
    events = prof.profiler.kineto_results.events() if prof.profiler is not None else []
    deltas = sorted(
        (e.start_ns(), e.nbytes())
        for e in events
        if e.name() == "[memory]" and e.device_type() == torch.profiler.DeviceType.CPU
    )
    live = peak = 0
    for _, nbytes in deltas:
        live += nbytes
        peak = max(peak, live)
    return peak
