"""One worker rank of a parallel ``serve`` group (started by ``tp_group``, not users).

``python -m deepseek_runtime.backends.tp_worker --model DIR --rank R --tensor T
--pipeline P ...`` joins the group rank 0 (the leader's ``serve`` process) opened, loads
its shard (its heads / experts of its stage's layers) with the same settings, then loops:
receive a step's chunks, run its share of them (``tp_group.run_step``: the TP collectives
and the stages' sends pair with the other ranks'), drop the logits. It exits 0 when rank
0 sends the stop message, and non-zero when rank 0 goes away (the world's sockets close,
or the kernel sends the parent-death signal), so no worker outlives its server.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import signal
import sys
import time

import torch

from ..model.runner import ModelRunner, SeqChunk
from ..parallel.config import ParallelConfig
from ..parallel.groups import build_context, init_distributed
from .kv_setup import PLACEHOLDER_BLOCKS, follow_rank0
from .tp_group import (
    IDLE_TIMEOUT,
    STEP_TIMEOUT,
    broadcast_step,
    cuda_device,
    run_step,
    share_cpu_threads,
)

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_PR_SET_PDEATHSIG = 1


def _log(level: str, message: str, **fields: object) -> None:
    now = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
    entry: dict[str, object] = {"time": now, "level": level}
    entry |= {"logger": "deepseek_runtime.tp_worker", "message": message, **fields}
    print(json.dumps(entry, default=str), file=sys.stderr, flush=True)


def _die_with_parent() -> None:
    """Linux: SIGKILL this worker when the ``serve`` process dies, however it dies."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="deepseek_runtime.backends.tp_worker")
    parser.add_argument("--model", required=True)
    parser.add_argument("--rank", type=int, required=True)
    parser.add_argument("--tensor", type=int, required=True)
    parser.add_argument("--pipeline", type=int, default=1)
    parser.add_argument("--micro-batches", type=int, default=1)
    parser.add_argument("--local-rank", type=int, help="index on this node (default: rank)")
    parser.add_argument("--node-ranks", type=int, help="ranks on this node (default: all)")
    parser.add_argument("--expert", action="store_true")
    parser.add_argument("--master-addr", default="127.0.0.1")
    parser.add_argument("--master-port", type=int, required=True)
    parser.add_argument("--dtype", choices=sorted(_DTYPES), default="float32")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--block-size", type=int, default=16)
    parser.add_argument("--num-blocks", type=int)
    parser.add_argument("--kv-cache-memory-bytes", type=int)
    parser.add_argument("--quantization", default="auto")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    _die_with_parent()
    args = parse_args(argv)
    world = args.tensor * args.pipeline
    config = ParallelConfig(
        tensor=args.tensor,
        pipeline=args.pipeline,
        expert=args.expert,
        rank=args.rank,
        world_size=world,
    )
    share_cpu_threads(args.node_ranks or world, args.device)
    local = args.rank if args.local_rank is None else args.local_rank
    device = cuda_device(args.device, local)
    init_distributed(config, args.master_addr, args.master_port, device, IDLE_TIMEOUT)
    ctx = build_context(config, device, STEP_TIMEOUT)
    sized_by_rank0 = args.num_blocks is None and args.kv_cache_memory_bytes is None
    runner = ModelRunner.from_pretrained(
        args.model,
        dtype=_DTYPES[args.dtype],
        device=device,
        block_size=args.block_size,
        num_blocks=PLACEHOLDER_BLOCKS if sized_by_rank0 else args.num_blocks,
        kv_cache_memory_bytes=args.kv_cache_memory_bytes,
        quantization=args.quantization,
        parallel=ctx,
    )
    if sized_by_rank0:  # rank 0 sizes the group's cache from memory (backends.kv_setup)
        follow_rank0(runner)
    weight_bytes = runner.resident_weight_bytes()
    _log(
        "info",
        "tensor-parallel rank loaded",
        rank=args.rank,
        stage=ctx.pp.rank,
        layers=len(runner.model.layers),
        weight_bytes=weight_bytes,
    )
    while (chunks := broadcast_step(None)) is not None:
        run_step(runner, [SeqChunk(*chunk) for chunk in chunks], ctx, args.micro_batches)
    _log("info", "tensor-parallel rank stopping", rank=args.rank)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as exc:  # a lost peer, a failed load: say so, exit non-zero
        _log("error", "tensor-parallel rank failed", error=f"{type(exc).__name__}: {exc}")
        sys.exit(1)
