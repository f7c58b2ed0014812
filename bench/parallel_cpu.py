"""CPU benchmark: the overhead of tensor, expert and pipeline parallelism on the bench model.

Run: ``.venv/bin/python bench/parallel_cpu.py [--arch v3|qwen2|llama] [--requests 16]
[--max-tokens 32] [--layouts tp1,tp2,ep2,pp2]``.

Builds the native engine once per layout on the same random-weight checkpoint
(``bench_models.py``) in this process: TP=1, TP=2, EP=2 (TP=2 with the routed experts
partitioned) and PP=2 (two stages of four layers, one micro-batch per stage); this process
is rank 0 and spawns the other rank, as ``serve`` does. Every layout runs the same greedy
workload through ``LLMEngine.step``. Rank 0's communication (the step broadcast, the
layers' all-reduce / all-gather, the stages' send / receive) is timed by wrapping
``torch.distributed``'s functions; under PP rank 0 also reports how much of each step it
computed and how much it waited (the pipeline bubble, from ``pp_schedule.StageTimes``).
Prints one JSON object: per layout, output tokens/s and its ratio to TP=1, the share of
the run in rank 0's communication, rank 0's resident weight bytes against TP=1's, and
whether the greedy tokens equal TP=1's. Every process gets ``cores / 2`` torch threads in
every layout (TP=1 included), so the ratios compare the same per-process compute. On a
2-core machine this measures overhead, not a speed-up: the two ranks share the cores.
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
from deepseek_runtime.backends.pp_schedule import StageTimes
from deepseek_runtime.backends.tp_group import TensorParallelExecutor, share_cpu_threads
from deepseek_runtime.checkpoint.make_tiny import make_tiny_checkpoint
from deepseek_runtime.engine import LLMEngine, SamplingParams
from deepseek_runtime.parallel.groups import destroy_process_groups

COLLECTIVES = ("all_reduce", "all_gather", "broadcast_object_list", "isend", "send", "recv")


class CollectiveTimer:
    instance: CollectiveTimer
    """Wraps ``torch.distributed``'s communication so its wall time adds up here (an
    asynchronous send counts only its posting; its wait shows up in the next receive)."""

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


LAYOUTS: dict[str, dict[str, Any]] = {
    "tp1": {},
    "tp2": {"tensor_parallel_size": 2},
    "ep2": {"tensor_parallel_size": 2, "enable_expert_parallel": True},
    "pp2": {"pipeline_parallel_size": 2},
}


def measure(
    model_dir: Path, layout: dict[str, Any], workload: list[list[int]], max_tokens: int
) -> dict[str, Any]:
    """Build the engine for ``layout``, run the workload, tear the group down."""
    timer = CollectiveTimer.instance
    options = NativeEngineOptions(
        model_dir=model_dir, dtype="float32", device="cpu", num_blocks=512, **layout
    )
    engine, _ = build_engine(options)
    engine.generate([[5, 6, 7, 8]], SamplingParams(max_tokens=2, temperature=0))  # warm-up
    executor = engine.runner
    timer.seconds, timer.calls = 0.0, 0
    if isinstance(executor, TensorParallelExecutor):
        executor.stage_times = StageTimes()  # count the timed run only
    result = run(engine, workload, max_tokens)
    result["comm_s"], result["comm_calls"] = timer.seconds, timer.calls
    if isinstance(executor, TensorParallelExecutor):
        result["weight_bytes"] = executor.runner.resident_weight_bytes()
        times = executor.stage_times
        if times.steps:
            result["bubble"] = times.bubble
            result["wait_share"] = times.wait_s / times.step_s
        executor.supervisor.stop()
        destroy_process_groups()
    else:
        result["weight_bytes"] = executor.resident_weight_bytes()  # type: ignore[attr-defined]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--arch", choices=sorted(BENCH_MODELS), default="v3")
    parser.add_argument("--requests", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--layouts", default=",".join(LAYOUTS), help="comma-separated")
    args = parser.parse_args()
    names = ["tp1", *(n for n in args.layouts.split(",") if n and n != "tp1")]
    overrides = BENCH_MODELS[args.arch]
    if args.arch != "v3":
        names = [n for n in names if n != "ep2"]  # no routed experts
    workdir = Path(tempfile.mkdtemp(prefix="bench-parallel-"))
    model_dir = make_tiny_checkpoint(workdir / "model", args.arch, args.seed, overrides)
    rng = random.Random(args.seed)
    workload = [
        [rng.randrange(2, overrides["vocab_size"]) for _ in range(rng.randint(8, 64))]
        for _ in range(args.requests)
    ]
    share_cpu_threads(2, "cpu")  # TP=1 gets the threads of one TP=2 rank: same per process
    CollectiveTimer.instance = CollectiveTimer()
    results = {name: measure(model_dir, LAYOUTS[name], workload, args.max_tokens) for name in names}
    one = results["tp1"]
    report: dict[str, Any] = {
        "arch": args.arch,
        "requests": args.requests,
        "max_tokens": args.max_tokens,
        "tp1_tokens_per_s": round(one["tokens_per_s"], 1),
        "tp1_weight_bytes": one["weight_bytes"],
    }
    for name in names[1:]:
        r = results[name]
        report[name] = {
            "tokens_per_s": round(r["tokens_per_s"], 1),
            "over_tp1": round(r["tokens_per_s"] / one["tokens_per_s"], 3),
            "comm_share": round(r["comm_s"] / r["seconds"], 3),
            "comm_calls": r["comm_calls"],
            "rank0_weight_bytes": r["weight_bytes"],
            "rank0_over_tp1_bytes": round(r["weight_bytes"] / one["weight_bytes"], 3),
            "greedy_tokens_identical": r["outputs"] == one["outputs"],
        }
        if "bubble" in r:
            report[name]["rank0_bubble"] = round(r["bubble"], 3)
            report[name]["rank0_wait_share"] = round(r["wait_share"], 3)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
