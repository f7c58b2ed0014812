"""GPU benchmark of the Triton kernels: achieved bandwidth against the device's copy rate.

Run: ``.venv/bin/python bench/gpu_kernels.py`` on a machine with a CUDA device. Without
one it prints ``{"benchmark": "gpu_kernels", "device": null, "skipped": ...}`` and exits 0.
``--smoke`` runs the same plumbing on CPU under Triton's interpreter with tiny shapes, to
check the script itself; its timings mean nothing.

Measured, each with ``triton.testing.do_bench`` (median):

* ``copy``: ``dst.copy_(src)`` of 1 GiB, read + written bytes per second: the ceiling;
* ``gemm``: per weight shape and batch, bf16 ``F.linear`` (cuBLAS) against the Triton
  W8A16, W4A16 and FP8-block GEMMs; bytes moved = weights + scales + activations in/out;
  at batch 1 the int8 / int4 speedups over bf16 (goals: int8 >= 1.8x, int4 >= 3.5x);
* ``moe``: the grouped MoE GEMM on stacked bf16 / int8 / int4 experts, bytes = the
  experts actually routed to;
* ``mla_decode``: paged MLA decode, bytes = the latent cache read.
"""

# The kernel modules are imported inside functions, after --smoke has set TRITON_INTERPRET.
# ruff: noqa: PLC0415
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import torch

GOALS_BATCH_1 = {"int8": 1.8, "int4": 3.5}


def _timer(device: torch.device) -> Callable[[Callable[[], object]], float]:
    if device.type == "cuda":
        from triton.testing import do_bench

        return lambda fn: float(do_bench(fn, warmup=25, rep=100, return_mode="median")) * 1e-3

    def wall(fn: Callable[[], object]) -> float:
        fn()
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start

    return wall


def _gbps(nbytes: int, seconds: float) -> float:
    return round(nbytes / seconds / 1e9, 2)


def rel_err(got: torch.Tensor, want: torch.Tensor) -> float:
    """Relative Frobenius error of a kernel's output against the torch reference."""
    return float((got.float() - want.float()).norm() / want.float().norm().clamp(min=1e-30))


def copy_bandwidth(device: torch.device, nbytes: int, timer: Callable[..., float]) -> float:
    src = torch.empty(nbytes, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    return _gbps(2 * nbytes, timer(lambda: dst.copy_(src)))


def bench_gemm_shape(
    device: torch.device, n: int, k: int, batches: list[int], timer: Any
) -> list[dict[str, Any]]:
    """Every weight format of one ``[n, k]`` weight at each batch size."""
    from deepseek_runtime.kernels.fp8 import quantize_fp8_blocks
    from deepseek_runtime.kernels.quant.int4 import quantize_int4
    from deepseek_runtime.kernels.quant.int8 import quantize_int8
    from deepseek_runtime.kernels.triton.gemm import fp8_block_gemm, w4a16_gemm, w8a16_gemm

    dense = torch.randn(n, k, device=device) * k**-0.5
    bf16 = dense.to(torch.bfloat16)
    q8 = quantize_int8(dense)
    q4 = quantize_int4(dense, 128, layout="nibble")
    fp8, scale_inv = (t.to(device) for t in quantize_fp8_blocks(dense.cpu()))
    kernels: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
        "bf16": lambda x: torch.nn.functional.linear(x, bf16),
        "int8": lambda x: w8a16_gemm(x, q8.qweight, q8.scales),
        "int4": lambda x: w4a16_gemm(x, q4.packed, q4.scales, 128),
        "fp8": lambda x: fp8_block_gemm(x, fp8, scale_inv),
    }
    weight_bytes = {
        "bf16": bf16.numel() * 2,
        "int8": q8.nbytes,
        "int4": q4.nbytes,
        "fp8": fp8.numel() + scale_inv.numel() * 4,
    }
    rows = []
    for batch in batches:
        x = torch.randn(batch, k, device=device).to(torch.bfloat16)
        io = (batch * k + batch * n) * 2
        seconds = {f: timer(lambda fn=fn, x=x: fn(x)) for f, fn in kernels.items()}
        ref = x.float() @ dense.T
        rows.append(
            {
                "shape": [n, k],
                "batch": batch,
                "rel_err_vs_fp32": {f: round(rel_err(fn(x), ref), 5) for f, fn in kernels.items()},
                "us": {f: round(s * 1e6, 2) for f, s in seconds.items()},
                "gbps": {f: _gbps(weight_bytes[f] + io, s) for f, s in seconds.items()},
                "speedup_vs_bf16": {
                    f: round(seconds["bf16"] / s, 3) for f, s in seconds.items() if f != "bf16"
                },
            }
        )
    return rows


def bench_moe(device: torch.device, cfg: dict[str, int], timer: Any) -> dict[str, Any]:
    from deepseek_runtime.kernels.moe import fused_moe
    from deepseek_runtime.kernels.quant.experts import (
        quantize_int4_experts,
        quantize_int8_experts,
    )
    from deepseek_runtime.kernels.triton.moe import triton_fused_moe

    e, hidden, inter, tokens, top_k = (
        cfg[k] for k in ("experts", "hidden", "inter", "tokens", "top_k")
    )
    gate_up = torch.randn(e, 2 * inter, hidden, device=device) * hidden**-0.5
    down = torch.randn(e, hidden, inter, device=device) * inter**-0.5
    stacks = {
        "bf16": (gate_up.to(torch.bfloat16), down.to(torch.bfloat16)),
        "int8": (quantize_int8_experts(gate_up), quantize_int8_experts(down)),
        "int4": (
            quantize_int4_experts(gate_up, cfg["group"], layout="nibble"),
            quantize_int4_experts(down, cfg["group"], layout="nibble"),
        ),
    }
    x = torch.randn(tokens, hidden, device=device).to(torch.bfloat16)
    ids = torch.stack([torch.randperm(e, device=device)[:top_k] for _ in range(tokens)])
    weights = torch.rand(tokens, top_k, device=device)
    touched = int(torch.unique(ids).numel())
    out: dict[str, Any] = {"config": cfg, "experts_touched": touched}
    for name, (gu, dn) in stacks.items():
        per_expert = sum(
            (w.numel() * w.element_size() if isinstance(w, torch.Tensor) else w.nbytes) // e
            for w in (gu, dn)
        )
        seconds = timer(lambda gu=gu, dn=dn: triton_fused_moe(x, ids, weights, gu, dn))
        want = fused_moe(x.float(), ids, weights, gate_up, down)  # the reference loop
        err = rel_err(triton_fused_moe(x, ids, weights, gu, dn), want)
        out[name] = {
            "us": round(seconds * 1e6, 2),
            "gbps": _gbps(per_expert * touched, seconds),
            "rel_err_vs_fp32": round(err, 5),
        }
    return out


def bench_mla(device: torch.device, cfg: dict[str, int], timer: Any) -> dict[str, Any]:
    from deepseek_runtime.kernels.triton.mla_decode import mla_decode_latent

    batch, heads, rank, rope, ctx, block = (
        cfg[k] for k in ("batch", "heads", "rank", "rope", "context", "block_size")
    )
    blocks_per_seq = -(-ctx // block)
    cache = torch.randn(batch * blocks_per_seq * block, rank + rope, device=device)
    cache = cache.to(torch.bfloat16)
    tables = torch.randperm(batch * blocks_per_seq, device=device).view(batch, blocks_per_seq)
    lens = torch.full((batch,), ctx, device=device)
    q = torch.randn(batch, heads, rank + rope, device=device).to(torch.bfloat16)
    seconds = timer(lambda: mla_decode_latent(q, cache, tables, lens, rank=rank, block_size=block))
    read = batch * ctx * (rank + rope) * 2
    keys = cache.view(-1, block, rank + rope)[tables].flatten(1, 2)[:, :ctx].float()
    probs = torch.softmax(torch.einsum("bhd,bld->bhl", q.float(), keys), dim=-1)
    want = torch.einsum("bhl,blr->bhr", probs, keys[..., :rank])
    got = mla_decode_latent(q, cache, tables, lens, rank=rank, block_size=block)
    return {
        "config": cfg,
        "us": round(seconds * 1e6, 2),
        "gbps": _gbps(read, seconds),
        "rel_err_vs_fp32": round(rel_err(got, want), 5),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="CPU + interpreter, tiny shapes")
    args = parser.parse_args(argv)
    if args.smoke:
        os.environ["TRITON_INTERPRET"] = "1"  # before any kernel module is imported
        device = torch.device("cpu")
    elif not torch.cuda.is_available():
        print(json.dumps({"benchmark": "gpu_kernels", "device": None,
                          "skipped": "no CUDA device: nothing measured"}))  # fmt: skip
        return 0
    else:
        device = torch.device("cuda")
    timer = _timer(device)
    if args.smoke:
        shapes, batches, copy_bytes = [(64, 128)], [1, 3], 1 << 20
        moe_cfg = {"experts": 4, "hidden": 64, "inter": 32, "tokens": 3, "top_k": 2, "group": 32}
        mla_cfg = {"batch": 2, "heads": 4, "rank": 32, "rope": 16, "context": 20, "block_size": 16}
    else:
        shapes = [(4096, 4096), (7168, 16384), (18432, 7168)]
        batches, copy_bytes = [1, 16, 256], 1 << 30
        moe_cfg = {"experts": 64, "hidden": 2048, "inter": 1408, "tokens": 1, "top_k": 6,
                   "group": 128}  # fmt: skip
        mla_cfg = {"batch": 32, "heads": 16, "rank": 512, "rope": 64, "context": 4096,
                   "block_size": 64}  # fmt: skip
    copy = copy_bandwidth(device, copy_bytes, timer)
    gemm = [row for n, k in shapes for row in bench_gemm_shape(device, n, k, batches, timer)]
    moe = bench_moe(device, moe_cfg, timer)
    mla = bench_mla(device, mla_cfg, timer)
    gemv = [r for r in gemm if r["batch"] == 1]
    goals = {
        f: {
            "want_speedup_batch_1": want,
            "measured": [r["speedup_vs_bf16"][f] for r in gemv],
            "met": all(r["speedup_vs_bf16"][f] >= want for r in gemv),
        }
        for f, want in GOALS_BATCH_1.items()
    }
    report = {
        "benchmark": "gpu_kernels",
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu (interpreter)",
        "smoke": args.smoke,
        "copy_gbps": copy,
        "gemm": [
            {**r, "fraction_of_copy": {f: round(v / copy, 3) for f, v in r["gbps"].items()}}
            for r in gemm
        ],
        "moe": moe,
        "mla_decode": {**mla, "fraction_of_copy": round(mla["gbps"] / copy, 3)},
        "goals": goals,
    }
    json.dump(report, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
