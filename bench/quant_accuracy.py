"""Accuracy of int8, FP8 and int4 weights against fp32 on the bench model.

Run: ``.venv/bin/python bench/quant_accuracy.py [--prompts 8] [--steps 24]``.

One checkpoint (``bench_models.BENCH_MODEL``: the DeepSeek-V3 shape of the CPU
benchmarks, hidden 512, 8 layers, 16 routed + 2 shared experts; ``q_lora_rank`` and
``kv_lora_rank`` raised to 256 and 240 so int4 groups of 64 and the CPU kernel's row
tiles fit every linear), loaded in fp32 with ``--quantization none | int8 | fp8 | int4``
(int4 in groups of 64). Every format runs the same prompts with teacher forcing on the
fp32 model's greedy continuation, so each step's next-token distribution is compared
on the same context: max and mean absolute logprob error over the vocabulary and the
steps, and how often the greedy token agrees with fp32's. Prints one JSON object; the
error should fall as the bit count rises (``tests/runtime/model/test_quantized_loading.py``
asserts the order on the tiny models).
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
from pathlib import Path
from typing import Any

import torch

from bench_models import BENCH_MODEL
from deepseek_runtime.checkpoint.make_tiny import make_tiny_checkpoint
from deepseek_runtime.model.runner import ModelRunner, SeqChunk

FORMATS = ("int8", "fp8", "int4")
GROUP = 64


def _run(runner: ModelRunner, ids: list[int], prompt_len: int) -> torch.Tensor:
    """Logprobs at positions prompt_len-1 .. len(ids)-1 (prefill, then one decode each)."""
    bs = runner.block_size
    table = list(range((len(ids) + bs - 1) // bs))
    out = [runner.execute([SeqChunk(ids[:prompt_len], 0, table)])[0]]
    for pos in range(prompt_len, len(ids)):
        out.append(runner.execute([SeqChunk([ids[pos]], pos, table)])[0])
    return torch.log_softmax(torch.stack(out), dim=-1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--prompt-len", type=int, default=32)
    parser.add_argument("--steps", type=int, default=24)
    args = parser.parse_args()
    torch.set_num_threads(1)
    overrides: dict[str, Any] = {**BENCH_MODEL, "q_lora_rank": 256, "kv_lora_rank": 240}
    model_dir = make_tiny_checkpoint(
        Path(tempfile.mkdtemp(prefix="bench-quant-acc-")) / "model", "v3", 0, overrides
    )

    def load(q: str) -> ModelRunner:
        return ModelRunner.from_pretrained(
            model_dir, block_size=16, num_blocks=64, quantization=q, quantization_group_size=GROUP
        )

    reference = load("none")
    rng = random.Random(0)
    prompts = [
        [rng.randrange(6, overrides["vocab_size"]) for _ in range(args.prompt_len)]
        for _ in range(args.prompts)
    ]
    sequences, ref_logprobs = [], []
    for prompt in prompts:  # fp32's greedy continuation, teacher-forced for every format
        ids = list(prompt)
        for _ in range(args.steps):
            ids.append(int(_run(reference, ids, len(ids))[-1].argmax()))
        sequences.append(ids)
        ref_logprobs.append(_run(reference, ids, args.prompt_len))
    result: dict[str, Any] = {
        "model": {
            k: overrides[k] for k in ("hidden_size", "num_hidden_layers", "n_routed_experts")
        },
        "int4_group_size": GROUP,
        "prompts": args.prompts,
        "steps_per_prompt": args.steps + 1,
    }
    for fmt in FORMATS:
        runner = load(fmt)
        errors, agree, total = [], 0, 0
        for ids, ref in zip(sequences, ref_logprobs, strict=True):
            got = _run(runner, ids, args.prompt_len)
            errors.append((got - ref).abs())
            agree += int((got.argmax(-1) == ref.argmax(-1)).sum())
            total += ref.shape[0]
        err = torch.cat(errors)
        held = runner.weight_bytes
        result[fmt] = {
            "max_abs_logprob_error": round(float(err.max()), 4),
            "mean_abs_logprob_error": round(float(err.mean()), 5),
            "greedy_agreement": round(agree / total, 4),
            "linear_bytes_vs_bf16": round(held.linear / held.linear_bf16_equivalent, 3),
        }
    order = [result[f]["mean_abs_logprob_error"] for f in ("int8", "fp8", "int4")]
    result["error_falls_as_bits_rise"] = order == sorted(order)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
