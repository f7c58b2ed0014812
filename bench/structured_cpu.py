"""CPU benchmark: output tokens/s of the engine with and without a JSON-schema constraint.

Run: ``.venv/bin/python bench/structured_cpu.py [--requests 16] [--max-tokens 64]``.

One random-weight ``make-tiny`` v3 checkpoint, fp32, one torch thread. Three runs of the
same prompts in this one process: all free, all constrained by one JSON schema (the
grammar compiled once, on the first request), and half and half in the same batches.
Constrained requests stop when their document is complete, so each run counts the tokens
it actually produced. Prints one JSON object: tokens/s of each run, the constrained/free
ratio, and how many constrained outputs parsed as JSON (all of them, or the mask is wrong).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from deepseek_runtime.backends import NativeEngineOptions
from deepseek_runtime.backends.native import build_engine
from deepseek_runtime.checkpoint.make_tiny import make_tiny_checkpoint
from deepseek_runtime.engine import LLMEngine, SamplingParams
from deepseek_runtime.engine.api import GuidedDecoding

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 12},
        "age": {"type": "integer", "minimum": 0, "maximum": 150},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 6}, "maxItems": 4},
    },
    "required": ["name", "age", "tags"],
    "additionalProperties": False,
}


def run(
    eng: LLMEngine, prompts: list[list[int]], params: list[SamplingParams]
) -> tuple[float, int, list[list[int]]]:
    start = time.perf_counter()
    outs = eng.generate(prompts, params)
    elapsed = time.perf_counter() - start
    return elapsed, sum(len(o) for o in outs), outs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=16)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rng = random.Random(0)
    with tempfile.TemporaryDirectory() as tmp:
        path = make_tiny_checkpoint(Path(tmp) / "tiny", arch="v3", seed=0)
        eng, tok = build_engine(
            NativeEngineOptions(model_dir=Path(path), dtype="float32", device="cpu")
        )
        prompts = [[0] + [rng.randrange(6, 500) for _ in range(12)] for _ in range(args.requests)]
        guided = GuidedDecoding("json_schema", json.dumps(SCHEMA))

        def params(constrained: bool, seed: int) -> SamplingParams:
            return SamplingParams(
                max_tokens=args.max_tokens,
                temperature=1.0,
                seed=seed,
                guided=guided if constrained else None,
                ignore_eos=not constrained,
            )

        run(eng, prompts[:2], [params(True, 0), params(False, 0)])  # warm-up and compile
        results: dict[str, Any] = {}
        parsed = 0
        constrained_total = 0
        for name, pattern in (
            ("free", lambda i: False),
            ("constrained", lambda i: True),
            ("mixed", lambda i: i % 2 == 0),
        ):
            plist = [params(pattern(i), i) for i in range(args.requests)]
            elapsed, tokens, outs = run(eng, prompts, plist)
            results[f"{name}_tokens_per_s"] = round(tokens / elapsed, 1)
            results[f"{name}_tokens"] = tokens
            for out, p in zip(outs, plist, strict=True):
                if p.guided is not None:
                    constrained_total += 1
                    try:
                        json.loads(tok.decode(out))
                        parsed += 1
                    except ValueError:
                        pass
        results["constrained_over_free"] = round(
            results["constrained_tokens_per_s"] / results["free_tokens_per_s"], 3
        )
        results["constrained_outputs_parsed"] = f"{parsed}/{constrained_total}"
        results["requests"] = args.requests
        json.dump(results, sys.stdout)
        print()


if __name__ == "__main__":
    main()
