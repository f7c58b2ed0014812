"""Where a decode step of our engine spends its time, on CPU, at DeepSeek's real MLA widths.

Run: ``.venv/bin/python bench/profile_decode_cpu.py [--requests 16] [--steps 30]
[--threads 1]``.

The bench model (``bench_models.BENCH_MODEL``) with ``kv_lora_rank`` 512 and
``qk_rope_head_dim`` 64, fp32, block size 16. Every request is prefilled first (stepped until
each has its first token); then ``--steps`` pure decode steps run under cProfile, timed
by this process's CPU time (``time.process_time``: other load on a shared host does not
inflate it, as it does wall-clock profiles). Each function's own time goes to a bucket by
the file it lives in; time inside torch's C functions goes to the bucket of the Python
function that called them. The shared helpers of ``kernels/linear.py`` are transparent:
their time (own and C) goes to their callers' buckets in proportion to each caller's
cumulative time in them, so an expert GEMM counts as MoE and a q/kv/o projection as
attention projections. Prints JSON: per-bucket milliseconds per step and share of the
profiled time, and the CPU milliseconds per step, unprofiled, of as many decode steps run
just before (with several threads, CPU time sums them).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import sys
import time
from pathlib import Path
from tempfile import mkdtemp
from typing import Any

import torch

from bench_models import BENCH_MODEL
from deepseek_runtime.backends import NativeEngineOptions
from deepseek_runtime.backends.native import build_engine
from deepseek_runtime.checkpoint.make_tiny import make_tiny_checkpoint
from deepseek_runtime.engine import SamplingParams
from engine_cpu import make_workload

# (path fragment, bucket); the first match wins.
BUCKETS = [
    ("kernels/paged_attention", "attention (paged MLA core, cache writes, rotary)"),
    ("kernels/mla_decode", "attention (paged MLA core, cache writes, rotary)"),
    ("kernels/kv_cache", "attention (paged MLA core, cache writes, rotary)"),
    ("kernels/rotary", "attention (paged MLA core, cache writes, rotary)"),
    ("model/attention", "attention projections (q, kv_a, o)"),
    ("kernels/moe", "moe (router, routed + shared experts)"),
    ("kernels/routing", "moe (router, routed + shared experts)"),
    ("model/moe", "moe (router, routed + shared experts)"),
    ("model/mlp", "dense MLP (layer 0) and shared experts"),
    ("kernels/norm", "norm"),
    ("model/norm", "norm"),
    ("model/decoder", "lm head, embedding, decoder python"),
    ("model/runner", "step metadata (runner, build_metadata)"),
    ("engine/sampler", "sampler"),
    ("deepseek_runtime/engine", "engine python (scheduler, outputs)"),
    ("deepseek_runtime/kv", "engine python (scheduler, outputs)"),
    ("deepseek_runtime/model", "model python (runner, layers)"),
    ("torch/nn", "torch python (nn.Module dispatch)"),
]


def bucket_of(path: str) -> str:
    for fragment, name in BUCKETS:
        if fragment in path:
            return name
    return "other python"


# shared GEMM helpers, the packed weights' apply and torch.ops dispatch (the native
# kernels): charged to whoever calls them
TRANSPARENT = ("kernels/linear", "kernels/cpu/packed", "torch/_ops")


def _transparent(path: str) -> bool:
    return any(fragment in path for fragment in TRANSPARENT)


def breakdown(stats: pstats.Stats) -> dict[str, float]:
    """Seconds per bucket: Python functions by file, C calls by their caller's file, and
    the transparent helpers' share split over their callers by cumulative time."""
    totals: dict[str, float] = {}
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    held: dict[Any, float] = {}  # transparent function -> seconds charged to it
    for (path, line, name), (_cc, _nc, own, _cum, callers) in raw.items():
        if path != "~":
            if _transparent(path):
                held[(path, line, name)] = held.get((path, line, name), 0.0) + own
            else:
                key = bucket_of(path)
                totals[key] = totals.get(key, 0.0) + own
            continue
        for caller, (_c1, _c2, tt, _ct) in callers.items():
            if _transparent(caller[0]):
                held[caller] = held.get(caller, 0.0) + tt
            else:
                key = bucket_of(caller[0])
                totals[key] = totals.get(key, 0.0) + tt
    # a helper called by another helper passes its share up the chain (a few levels)
    while held:
        func, seconds = held.popitem()
        callers = {c: v[3] for c, v in raw[func][4].items() if c != func}
        whole = sum(callers.values()) or 1.0
        for caller, cum in callers.items():
            share = seconds * cum / whole
            if _transparent(caller[0]):
                held[caller] = held.get(caller, 0.0) + share
            else:
                key = bucket_of(caller[0])
                totals[key] = totals.get(key, 0.0) + share
    return totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=16)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--cpu-kernels",
        default="auto",
        choices=("auto", "packed", "torch"),
        help="auto | packed | torch (the before/after switch)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    shape = {**BENCH_MODEL, "kv_lora_rank": 512, "qk_rope_head_dim": 64}
    model_dir = make_tiny_checkpoint(Path(mkdtemp()) / "mla", "v3", overrides=shape)
    prompts = [p for p, _ in make_workload(args.requests, shape["vocab_size"], 0)]
    budget = 2 * args.steps + 8
    options = NativeEngineOptions(
        model_dir=model_dir,
        dtype="float32",
        device="cpu",
        block_size=16,
        num_blocks=sum(-(-(len(p) + budget) // 16) for p in prompts) + 16,
        max_model_len=1024,
        max_num_seqs=128,
        max_num_batched_tokens=4096,
        enable_prefix_caching=False,
        cpu_kernels=args.cpu_kernels,
    )
    engine, _ = build_engine(options)
    params = SamplingParams(max_tokens=budget, temperature=0, ignore_eos=True)
    for i, prompt in enumerate(prompts):
        engine.add_request(f"r{i}", prompt, params)
    started: set[str] = set()
    while len(started) < len(prompts):
        started.update(o.request_id for o in engine.step())
    cpu0 = time.process_time()
    for _ in range(args.steps):
        engine.step()
    unprofiled = (time.process_time() - cpu0) / args.steps
    profiler = cProfile.Profile(timer=time.process_time)
    profiler.enable()
    for _ in range(args.steps):
        engine.step()
    profiler.disable()
    totals = breakdown(pstats.Stats(profiler))
    whole = sum(totals.values())
    print(
        json.dumps(
            {
                "model": {
                    k: shape[k]
                    for k in (
                        "hidden_size",
                        "num_hidden_layers",
                        "kv_lora_rank",
                        "qk_rope_head_dim",
                        "n_routed_experts",
                    )
                },
                "batch": len(prompts),
                "decode_steps": args.steps,
                "torch_threads": torch.get_num_threads(),
                "cpu_kernels": args.cpu_kernels,
                "cpu_ms_per_step_unprofiled": round(1000 * unprofiled, 2),
                "cpu_ms_per_step_profiled": round(1000 * whole / args.steps, 2),
                "buckets": {
                    k: {
                        "ms_per_step": round(1000 * v / args.steps, 2),
                        "share_pct": round(100 * v / whole, 1),
                    }
                    for k, v in sorted(totals.items(), key=lambda kv: -kv[1])
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    sys.exit(main())
