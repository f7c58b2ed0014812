"""CPU benchmark: decode tokens/s of the real engine with bf16, int8 and int4 weights.

Run: ``.venv/bin/python bench/quant_engine_cpu.py [--hidden 2048] [--layers 2] [--rounds 3]``.

One R1-distill-shaped checkpoint (``make-tiny --arch qwen2``: hidden 2048, MLP 5632,
16 heads over 4 KV heads, a small vocabulary so the GEMMs of the decoder layers
dominate), loaded three times through ``backends.native.build_engine`` in bf16 with
``--quantization none | int8 | int4`` (group 128). For batch 1 and batch 32 each engine
prefills ``batch`` short prompts, then the timed part is ``--steps`` decode steps of the
engine's own loop (scheduler, runner, sampler: everything a served request pays). Formats
are timed round-robin and each reports its median, so load from other processes on a
shared CPU falls on all of them alike. One torch thread. Prints one JSON object: decode
tokens/s per format and batch, ratios against bf16, resident linear-weight bytes (what the
runner holds, ``runner.weight_bytes``), and the issue's goals at batch 1 (int8 >= 1.4x,
int4 >= 1.8x bf16). ``bench/quant_cpu.py`` measures the same kernels without the engine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from deepseek_runtime.backends.native import build_engine
from deepseek_runtime.backends.options import NativeEngineOptions
from deepseek_runtime.checkpoint.make_tiny import make_tiny_checkpoint
from deepseek_runtime.engine import LLMEngine, SamplingParams

FORMATS = ("none", "int8", "int4")
GOALS_BATCH_1 = {"int8": 1.4, "int4": 1.8}


def decode_tokens_per_s(engine: LLMEngine, batch: int, steps: int, tag: str) -> float:
    """Prefill ``batch`` prompts, then time ``steps`` decode steps of the engine loop."""
    params = SamplingParams(max_tokens=steps + 1, temperature=0, ignore_eos=True)
    for i in range(batch):
        engine.add_request(f"{tag}-{i}", [6 + (i + j) % 500 for j in range(8)], params)
    engine.step()  # the prefill step (and each request's first token)
    produced = 0
    start = time.perf_counter()
    while engine.has_unfinished_requests():
        produced += sum(len(o.new_token_ids) for o in engine.step())
    return produced / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hidden", type=int, default=2048)
    parser.add_argument("--intermediate", type=int, default=5632)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    args = parser.parse_args()
    torch.set_num_threads(1)
    overrides: dict[str, Any] = {
        "hidden_size": args.hidden,
        "intermediate_size": args.intermediate,
        "num_hidden_layers": args.layers,
        "num_attention_heads": 16,
        "num_key_value_heads": 4,
        "vocab_size": 512,
        "torch_dtype": "bfloat16",
    }
    workdir = Path(tempfile.mkdtemp(prefix="bench-quant-engine-"))
    model_dir = make_tiny_checkpoint(workdir / "model", "qwen2", 0, overrides)
    engines: dict[str, LLMEngine] = {}
    for fmt in FORMATS:
        engines[fmt], _ = build_engine(
            NativeEngineOptions(
                model_dir=model_dir,
                dtype="bfloat16",
                device="cpu",
                quantization=fmt,
                num_blocks=512,
                block_size=16,
            )
        )
    runs: dict[tuple[str, int], list[float]] = {(f, b): [] for f in FORMATS for b in args.batches}
    for r in range(args.rounds):
        for batch in args.batches:
            for fmt in FORMATS:
                tps = decode_tokens_per_s(engines[fmt], batch, args.steps, f"r{r}")
                runs[(fmt, batch)].append(tps)
                print(f"round {r} batch {batch} {fmt}: {tps:.1f} tok/s", file=sys.stderr)
    names = {"none": "bf16", "int8": "int8", "int4": "int4"}
    result: dict[str, Any] = {
        "model": {
            k: overrides[k] for k in ("hidden_size", "intermediate_size", "num_hidden_layers")
        },
        "torch_threads": 1,
        "decode_steps": args.steps,
        "rounds": args.rounds,
    }
    for batch in args.batches:
        base = statistics.median(runs[("none", batch)])
        result[f"batch_{batch}"] = {
            names[f]: {
                "tokens_per_s": round(statistics.median(runs[(f, batch)]), 1),
                "vs_bf16": round(statistics.median(runs[(f, batch)]) / base, 2),
            }
            for f in FORMATS
        }
    result["linear_weight_bytes"] = {
        names[f]: engines[f].runner.weight_bytes.linear  # type: ignore[attr-defined]
        for f in FORMATS
    }
    bf16_bytes = result["linear_weight_bytes"]["bf16"]
    result["linear_weight_bytes_vs_bf16"] = {
        k: round(v / bf16_bytes, 3) for k, v in result["linear_weight_bytes"].items()
    }
    if 1 in args.batches:
        result["goals_batch_1"] = {
            q: {"goal": g, "measured": result["batch_1"][q]["vs_bf16"]}
            for q, g in GOALS_BATCH_1.items()
        }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
