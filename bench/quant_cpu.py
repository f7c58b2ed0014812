"""CPU benchmark: decode steps of a GEMM-bound decoder stack in bf16, int8 and int4.

Run: ``.venv/bin/python bench/quant_cpu.py [--hidden 2048] [--layers 2] [--rounds 5]``.

Each layer is the linears of a decoder block (hidden ``H``, MLP width ``I``)::

    q_proj H->H, kv_proj H->H/4, o_proj H->H, gate_up H->2I, down I->H   (+ SwiGLU, residuals)

held as bf16 tensors (``F.linear``), as :class:`Int8Weight` (``torch._weight_int8pack_mm``)
or as :class:`Int4Weight` (``torch._weight_int4pack_mm_for_cpu``, group 128), all with
bf16 activations; fp32 is reported as a further reference. One torch thread. A "step" is
one pass of ``batch`` tokens through every layer (one decode step of ``batch`` sequences).
Formats are timed round-robin and each reports its median step, so load from other
processes on a shared CPU falls on all of them alike. Prints one JSON object: step time,
tokens/s and resident weight bytes per format, ratios against bf16, and the issue's goals
at batch 1 (int8 >= 1.4x, int4 >= 1.8x bf16).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import torch

from deepseek_runtime.kernels.linear import Weight, linear, silu_and_mul
from deepseek_runtime.kernels.quant.int4 import quantize_int4
from deepseek_runtime.kernels.quant.int8 import quantize_int8

GOALS_BATCH_1 = {"int8": 1.4, "int4": 1.8}
PROJECTIONS = ("q_proj", "kv_proj", "o_proj", "gate_up", "down")


def layer_shapes(hidden: int, inter: int) -> dict[str, tuple[int, int]]:
    """``[out, in]`` of each projection of one layer."""
    return {
        "q_proj": (hidden, hidden),
        "kv_proj": (hidden // 4, hidden),
        "o_proj": (hidden, hidden),
        "gate_up": (2 * inter, hidden),
        "down": (hidden, inter),
    }


def make_layers(
    fmt: str, shapes: dict[str, tuple[int, int]], layers: int, group: int
) -> list[dict[str, Weight]]:
    """``layers`` layers of random weights in format ``fmt`` (same seed for every format)."""
    gen = torch.Generator().manual_seed(0)
    out: list[dict[str, Weight]] = []
    for _ in range(layers):
        layer: dict[str, Weight] = {}
        for name, shape in shapes.items():
            dense = torch.randn(*shape, generator=gen) * shape[1] ** -0.5
            if fmt == "int8":
                layer[name] = quantize_int8(dense)
            elif fmt == "int4":
                layer[name] = quantize_int4(dense, group)
            else:
                layer[name] = dense.to(torch.float32 if fmt == "fp32" else torch.bfloat16)
        out.append(layer)
    return out


def resident_bytes(layers: list[dict[str, Weight]]) -> int:
    total = 0
    for layer in layers:
        for w in layer.values():
            total += w.numel() * w.element_size() if isinstance(w, torch.Tensor) else w.nbytes
    return total


def step(layers: list[dict[str, Weight]], h: torch.Tensor) -> torch.Tensor:
    """One pass of ``h`` ``[batch, hidden]`` through every layer."""
    for layer in layers:
        q = linear(h, layer["q_proj"])
        linear(h, layer["kv_proj"])  # the latent a real layer would cache
        h = h + linear(q, layer["o_proj"])
        gate_up = linear(h, layer["gate_up"])
        inter = gate_up.shape[-1] // 2
        h = h + linear(silu_and_mul(gate_up[:, :inter], gate_up[:, inter:]), layer["down"])
    return h


def time_round_robin(runs: dict[str, Callable[[], object]], rounds: int) -> dict[str, list[float]]:
    """Seconds per call of each function, ``rounds`` times, interleaved (after a warm-up)."""
    for fn in runs.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, fn in runs.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=2048)
    parser.add_argument("--intermediate", type=int, default=4096)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--group-size", type=int, default=128)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--formats", nargs="+", default=["bf16", "int8", "int4", "fp32"])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    shapes = layer_shapes(args.hidden, args.intermediate)
    stacks = {f: make_layers(f, shapes, args.layers, args.group_size) for f in args.formats}
    results: dict[str, Any] = {
        f: {"resident_weight_bytes": resident_bytes(s)} for f, s in stacks.items()
    }
    for batch in args.batches:
        inputs = {
            f: torch.randn(batch, args.hidden).to(torch.float32 if f == "fp32" else torch.bfloat16)
            for f in args.formats
        }
        runs = {f: partial(step, stacks[f], inputs[f]) for f in args.formats}
        with torch.inference_mode():
            times = time_round_robin(runs, args.rounds)
        for f, samples in times.items():
            median = statistics.median(samples)
            results[f][f"batch_{batch}"] = {
                "step_ms": round(median * 1e3, 3),
                "step_ms_min": round(min(samples) * 1e3, 3),
                "tokens_per_s": round(batch / median, 2),
            }
    ratios: dict[str, Any] = {}
    if "bf16" in results:
        base = results["bf16"]
        for f in args.formats:
            if f == "bf16":
                continue
            ratios[f] = {
                f"speedup_batch_{b}": round(
                    base[f"batch_{b}"]["step_ms"] / results[f][f"batch_{b}"]["step_ms"], 3
                )
                for b in args.batches
            }
            ratios[f]["weight_bytes"] = round(
                results[f]["resident_weight_bytes"] / base["resident_weight_bytes"], 4
            )
    goals = {
        f: {"want_speedup_batch_1": want, "met": ratios[f]["speedup_batch_1"] >= want}
        for f, want in GOALS_BATCH_1.items()
        if f in ratios and "speedup_batch_1" in ratios[f]
    }
    report = {
        "benchmark": "quant_cpu",
        "shape": {
            "hidden": args.hidden,
            "intermediate": args.intermediate,
            "layers": args.layers,
            "projections": {k: list(v) for k, v in shapes.items()},
            "int4_group_size": args.group_size,
        },
        "threads": args.threads,
        "rounds": args.rounds,
        "torch": torch.__version__,
        "results": results,
        "vs_bf16": ratios,
        "goals": goals,
    }
    json.dump(report, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
