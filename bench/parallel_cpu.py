"""CPU benchmark: tensor parallelism's overhead, TP=1 against TP=2 on the bench model.

Run: ``.venv/bin/python bench/parallel_cpu.py [--arch v3|qwen2|llama] [--requests 16]
[--max-tokens 32]``.

Builds the native engine twice on the same random-weight checkpoint (``bench_models.py``)
in this process: TP=1, then TP=2 (this process is rank 0 and spawns rank 1, as ``serve``
does). Both run the same greedy workload through ``LLMEngine.step``. Rank 0's collectives
(the step broadcast and the layers' all-reduce / all-gather) are timed by wrapping
``torch.distributed``'s functions. Prints one JSON object: output tokens/s at each degree
and their ratio, the share of the TP=2 run spent in rank 0's collectives, rank 0's
resident weight bytes against TP=1's, and whether the greedy tokens agree. Every process
gets ``cores / 2`` torch threads at both degrees (TP=1 included), so the ratio compares
the same per-process compute. On a 2-core machine this measures overhead, not a
speed-up: the two ranks share the cores.
"""

from __future__ import annotations

import argparse
import functools
import json
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch.distributed as dist

from bench_models import BENCH_MODELS
from deepseek_runtime.backends import NativeEngineOptions
from deepseek_runtime.backends.native import build_engine
from deepseek_runtime.backends.tp_group import TensorParallelExecutor, share_cpu_threads
from deepseek_runtime.checkpoint.make_tiny import make_tiny_checkpoint
from deepseek_runtime.engine import LLMEngine, SamplingParams

COLLECTIVES = ("all_reduce", "all_gather", "broadcast_object_list")


class CollectiveTimer:
    """Wraps ``torch.distributed``'s collectives so their wall time adds up here."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.calls = 0
        for name in COLLECTIVES:
            setattr(dist, name, self._timed(getattr(dist, name)))

    def _timed(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start
                self.calls += 1

        return timed


def run(engine: LLMEngine, workload: list[list[int]], max_tokens: int) -> dict[str, Any]:
    params = SamplingParams(max_tokens=max_tokens, temperature=0, ignore_eos=True)
    tokens: dict[str, list[int]] = {}
    start = time.perf_counter()
    for i, prompt in enumerate(workload):
        engine.add_request(f"r{i}", prompt, params)
        tokens[f"r{i}"] = []
    while engine.has_unfinished_requests():
        for out in engine.step():
            tokens[out.request_id].extend(out.new_token_ids)
    seconds = time.perf_counter() - start
    total = sum(len(t) for t in tokens.values())
    return {"seconds": seconds, "tokens_per_s": total / seconds, "outputs": list(tokens.values())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--arch", choices=sorted(BENCH_MODELS), default="v3")
    parser.add_argument("--requests", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    overrides = BENCH_MODELS[args.arch]
    workdir = Path(tempfile.mkdtemp(prefix="bench-parallel-"))
    model_dir = make_tiny_checkpoint(workdir / "model", args.arch, args.seed, overrides)
    rng = random.Random(args.seed)
    workload = [
        [rng.randrange(2, overrides["vocab_size"]) for _ in range(rng.randint(8, 64))]
        for _ in range(args.requests)
    ]
    share_cpu_threads(2, "cpu")  # TP=1 gets the threads of one TP=2 rank: same per process
    timer = CollectiveTimer()
    results: dict[int, dict[str, Any]] = {}
    for tp in (1, 2):
        options = NativeEngineOptions(
            model_dir=model_dir, dtype="float32", device="cpu", num_blocks=512,
            tensor_parallel_size=tp,
        )  # fmt: skip
        engine, _ = build_engine(options)
        engine.generate([[5, 6, 7, 8]], SamplingParams(max_tokens=2, temperature=0))  # warm-up
        timer.seconds, timer.calls = 0.0, 0
        results[tp] = run(engine, workload, args.max_tokens)
        results[tp]["collective_s"], results[tp]["collective_calls"] = timer.seconds, timer.calls
        executor = engine.runner
        if isinstance(executor, TensorParallelExecutor):
            results[tp]["weight_bytes"] = executor.runner.resident_weight_bytes()
            executor.supervisor.stop()
        else:
            results[tp]["weight_bytes"] = executor.resident_weight_bytes()  # type: ignore[attr-defined]
    one, two = results[1], results[2]
    print(
        json.dumps(
            {
                "arch": args.arch,
                "requests": args.requests,
                "max_tokens": args.max_tokens,
                "tp1_tokens_per_s": round(one["tokens_per_s"], 1),
                "tp2_tokens_per_s": round(two["tokens_per_s"], 1),
                "tp2_over_tp1": round(two["tokens_per_s"] / one["tokens_per_s"], 3),
                "tp2_collective_share": round(two["collective_s"] / two["seconds"], 3),
                "tp2_collective_calls": two["collective_calls"],
                "tp1_weight_bytes": one["weight_bytes"],
                "tp2_rank0_weight_bytes": two["weight_bytes"],
                "tp2_rank0_over_tp1_bytes": round(two["weight_bytes"] / one["weight_bytes"], 3),
                "greedy_tokens_identical": one["outputs"] == two["outputs"],
            }
        )
    )


if __name__ == "__main__":
    main()
