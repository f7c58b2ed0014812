"""CPU benchmark: our continuous-batching engine vs transformers' batched ``generate``.

Run: ``.venv/bin/python bench/engine_cpu.py [--arch v3|qwen2|llama] [--requests 128]
[--hf-batch-size 32] [--mla-widths real,bench]``.

For ``v3`` the comparison runs at each of ``--mla-widths``: ``real`` is DeepSeek's own
latent (``kv_lora_rank`` 512, ``qk_rope_head_dim`` 64, what a served DeepSeek model
caches and attends over), ``bench`` the bench model's narrow one (128 / 16), where the
latent is cheap to read and attention flatters the engine; the JSON then has one object
per width under ``by_mla_widths``.

Both run in this one process on the same random-weight checkpoint (written with
``make-tiny`` and ``--set`` overrides, see ``bench_models.py``: for ``v3`` hidden 512, 8
layers, 16 routed + 2 shared experts; for ``qwen2`` / ``llama``, an R1-distill shape
with hidden 512, 8 layers and GQA 8/2), fp32, greedy, and the same ``max_new_tokens``
per request (EOS ignored, so every request produces exactly its budget). transformers
gets left-padded batches in arrival order; a batch runs until its longest budget, and
only each request's own budget counts as output (the extra tokens are reported as
``hf_padding_tokens``). Prints one JSON object: output tokens/s of each and their ratio,
TTFT p50/p99 of our engine (all requests arrive at t=0), KV waste (allocated slots not
holding a token, averaged over steps; block size 8 by default), peak RSS, and how many
requests got identical greedy tokens from both. Both use one torch thread by default
(``--threads``): on a shared CPU intra-op threads mostly add synchronization to small
matmuls.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from bench_models import BENCH_MODELS
from deepseek_runtime.backends import NativeEngineOptions
from deepseek_runtime.backends.native import build_engine
from deepseek_runtime.checkpoint.make_tiny import make_tiny_checkpoint
from deepseek_runtime.engine import LLMEngine, SamplingParams


def make_workload(n: int, vocab: int, seed: int) -> list[tuple[list[int], int]]:
    """``n`` (prompt, max_new_tokens) pairs with varied lengths."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        prompt_len = rng.choice([rng.randint(8, 64), rng.randint(64, 256)])
        out.append(([rng.randrange(2, vocab) for _ in range(prompt_len)], rng.randint(16, 128)))
    return out


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run_ours(engine: LLMEngine, workload: list[tuple[list[int], int]]) -> dict[str, Any]:
    start = time.perf_counter()
    first: dict[str, float] = {}
    tokens: dict[str, list[int]] = {}
    for i, (prompt, max_new) in enumerate(workload):
        params = SamplingParams(max_tokens=max_new, temperature=0, ignore_eos=True)
        engine.add_request(f"r{i}", prompt, params)
        tokens[f"r{i}"] = []
    waste: list[float] = []
    while engine.has_unfinished_requests():
        outs = engine.step()
        now = time.perf_counter()
        for out in outs:
            if out.request_id not in first:
                first[out.request_id] = now - start
            tokens[out.request_id].extend(out.new_token_ids)
        if engine.kv.allocated_slots():
            waste.append(engine.kv.waste_fraction())
    elapsed = time.perf_counter() - start
    total = sum(len(t) for t in tokens.values())
    ttft = list(first.values())
    return {
        "seconds": elapsed,
        "output_tokens": total,
        "tokens_per_s": total / elapsed,
        "ttft_p50_s": percentile(ttft, 0.5),
        "ttft_p99_s": percentile(ttft, 0.99),
        "kv_waste_pct": 100 * statistics.fmean(waste) if waste else 0.0,
        "steps": engine.num_steps,
        "preemptions": engine.stats().num_preemptions,
        "outputs": [tokens[f"r{i}"] for i in range(len(workload))],
    }


def run_hf(
    model_dir: Path, workload: list[tuple[list[int], int]], batch_size: int
) -> dict[str, Any]:
    from transformers import AutoModelForCausalLM  # noqa: PLC0415

    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()
    # Our side's ignore_eos (vLLM's meaning) keeps going past EOS but may still pick it;
    # min_new_tokens would instead mask EOS to -inf, so whenever EOS is the argmax the two
    # continue from different tokens. No EOS id: generate neither stops on it nor bans it.
    model.generation_config.eos_token_id = None
    pad = 0
    outputs: list[list[int]] = []
    generated = 0
    start = time.perf_counter()
    for b in range(0, len(workload), batch_size):
        batch = workload[b : b + batch_size]
        width = max(len(p) for p, _ in batch)
        max_new = max(m for _, m in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, (prompt, _) in enumerate(batch):
            ids[row, width - len(prompt) :] = torch.tensor(prompt)
            mask[row, width - len(prompt) :] = 1
        with torch.inference_mode():
            out = model.generate(
                input_ids=ids,
                attention_mask=mask,
                do_sample=False,
                max_new_tokens=max_new,
                pad_token_id=pad,
            )
        new = out[:, width:].tolist()
        generated += len(batch) * max_new
        outputs.extend(row[:m] for row, (_, m) in zip(new, batch, strict=True))
    elapsed = time.perf_counter() - start
    useful = sum(m for _, m in workload)
    return {
        "seconds": elapsed,
        "output_tokens": useful,
        "tokens_per_s": useful / elapsed,
        "padding_tokens": generated - useful,
        "outputs": outputs,
    }


def first_divergences(ours: list[list[int]], theirs: list[list[int]]) -> list[dict[str, int]]:
    """Where each differing request's greedy tokens first part: step and both tokens there.

    Reported so a mismatch can be told apart at a glance: the same token on one side at
    every divergence (say EOS) points at differing decoding rules, not at numerics.
    """
    out = []
    for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        if a == b:
            continue
        step = next((k for k, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), None)
        step = min(len(a), len(b)) if step is None else step
        out.append(
            {
                "request": i,
                "step": step,
                "ours": a[step] if step < len(a) else -1,
                "hf": b[step] if step < len(b) else -1,
            }
        )
    return out


REAL_MLA_WIDTHS = {"kv_lora_rank": 512, "qk_rope_head_dim": 64}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--arch", choices=sorted(BENCH_MODELS), default="v3")
    parser.add_argument("--requests", type=int, default=128)
    parser.add_argument("--hf-batch-size", type=int, default=32)
    parser.add_argument("--max-num-seqs", type=int, default=128)
    parser.add_argument("--max-num-batched-tokens", type=int, default=2048)
    parser.add_argument("--block-size", type=int, default=8)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch intra-op threads for both (0 = torch default)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-hf", action="store_true")
    parser.add_argument(
        "--mla-widths", default="real,bench", help="v3 only: real (512/64) and/or bench (128/16)"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.arch != "v3":
        print(json.dumps(run_shape(args, BENCH_MODELS[args.arch]), indent=2))
        return
    widths = {"real": {**BENCH_MODELS["v3"], **REAL_MLA_WIDTHS}, "bench": BENCH_MODELS["v3"]}
    names = args.mla_widths.split(",")
    results = {name: run_shape(args, widths[name]) for name in names}
    if len(results) == 1:
        print(json.dumps(results[names[0]], indent=2))
    else:
        print(json.dumps({"by_mla_widths": results}, indent=2))


def run_shape(args: argparse.Namespace, overrides: dict[str, Any]) -> dict[str, Any]:
    """Both engines on one checkpoint shape; the JSON object of one comparison."""
    workdir = Path(tempfile.mkdtemp(prefix="bench-engine-"))
    model_dir = make_tiny_checkpoint(
        workdir / "model", args.arch, seed=args.seed, overrides=overrides
    )
    workload = make_workload(args.requests, overrides["vocab_size"], args.seed)
    longest = max(len(p) + m for p, m in workload)
    blocks_needed = sum(-(-(len(p) + m) // args.block_size) for p, m in workload)
    options = NativeEngineOptions(
        model_dir=model_dir,
        dtype="float32",
        device="cpu",
        block_size=args.block_size,
        num_blocks=blocks_needed + 64,
        max_model_len=max(longest, 1024),
        max_num_seqs=args.max_num_seqs,
        max_num_batched_tokens=args.max_num_batched_tokens,
        enable_prefix_caching=True,
    )
    engine, _ = build_engine(options)
    engine.generate([[5, 6, 7, 8]], SamplingParams(max_tokens=2, temperature=0))  # warm-up
    engine.num_steps = 0
    ours = run_ours(engine, workload)
    print(f"ours: {ours['tokens_per_s']:.1f} tok/s in {ours['seconds']:.1f}s", file=sys.stderr)
    rss_ours = peak_rss_mib()
    result: dict[str, Any] = {
        "requests": len(workload),
        "prompt_tokens": sum(len(p) for p, _ in workload),
        "arch": args.arch,
        "model": {
            k: overrides[k]
            for k in (
                "hidden_size",
                "num_hidden_layers",
                "num_attention_heads",
                "num_key_value_heads",
                "kv_lora_rank",
                "qk_rope_head_dim",
                "n_routed_experts",
                "n_shared_experts",
            )
            if k in overrides
        },
        "torch_threads": torch.get_num_threads(),
        "ours_tokens_per_s": round(ours["tokens_per_s"], 1),
        "ours_seconds": round(ours["seconds"], 2),
        "ours_steps": ours["steps"],
        "ours_preemptions": ours["preemptions"],
        "ttft_p50_s": round(ours["ttft_p50_s"], 3),
        "ttft_p99_s": round(ours["ttft_p99_s"], 3),
        "kv_waste_pct": round(ours["kv_waste_pct"], 2),
        "peak_rss_mib_ours": round(rss_ours, 1),
    }
    if not args.skip_hf:
        hf = run_hf(model_dir, workload, args.hf_batch_size)
        same = sum(a == b for a, b in zip(ours["outputs"], hf["outputs"], strict=True))
        result.update(
            {
                "hf_tokens_per_s": round(hf["tokens_per_s"], 1),
                "hf_seconds": round(hf["seconds"], 2),
                "hf_batch_size": args.hf_batch_size,
                "hf_padding_tokens": hf["padding_tokens"],
                "ratio": round(ours["tokens_per_s"] / hf["tokens_per_s"], 2),
                "greedy_identical_requests": f"{same}/{len(workload)}",
                "greedy_first_divergences": first_divergences(ours["outputs"], hf["outputs"]),
            }
        )
    result["peak_rss_mib"] = round(peak_rss_mib(), 1)
    return result


if __name__ == "__main__":
    main()
