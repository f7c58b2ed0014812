# mypy: disable-error-code="no-untyped-def, untyped-decorator"
# ruff: noqa: N803, PLR0917
"""Fused MoE on CUDA: one grouped GEMM launch per projection over stacked expert weights.

The ``T x K`` (token, choice) pairs are sorted by expert and each expert's run is padded
to a multiple of the row tile ``BM``, so every row tile belongs to one expert::

    pair_rows   [p0 p3 p7 -1 | p1 p2 -1 -1 | ...]   (-1 = padding)
    tile_expert [    e0      |     e1      | ...]

Program ``(t, n)`` multiplies tile ``t``'s gathered rows by expert ``tile_expert[t]``'s
weight tile ``n``, read from the stack ``[E, N, K]`` (dense, int8 or int4 nibbles, each
unpacked in registers by :func:`~deepseek_runtime.kernels.triton.gemm.weight_tile`).
``gate_up`` reads token rows and writes pair rows; ``down`` reads and writes pair rows;
the routing weights and the sum over choices are one torch op at the end.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from deepseek_runtime.kernels.quant.experts import StackedInt4Weights, StackedInt8Weights
from deepseek_runtime.kernels.triton.common import dot_dtype, rows_block
from deepseek_runtime.kernels.triton.gemm import (
    BLOCK_N,
    DENSE,
    INT4,
    INT8,
    k_block,
    weight_tile,
)

StackedExperts = torch.Tensor | StackedInt8Weights | StackedInt4Weights


@triton.jit
def _grouped_gemm_kernel(
    a_ptr,
    w_ptr,
    s_ptr,
    c_ptr,
    a_rows_ptr,
    c_rows_ptr,
    tile_expert_ptr,
    N,
    K,
    stride_am,
    stride_we,
    stride_wn,
    stride_se,
    stride_sn,
    stride_cm,
    MODE: tl.constexpr,
    GROUP: tl.constexpr,
    BM: tl.constexpr,
    BN: tl.constexpr,
    BK: tl.constexpr,
    DOT: tl.constexpr,
):
    tile = tl.program_id(0)
    expert = tl.load(tile_expert_ptr + tile).to(tl.int64)
    pos = tile * BM + tl.arange(0, BM)
    a_rows = tl.load(a_rows_ptr + pos).to(tl.int64)
    c_rows = tl.load(c_rows_ptr + pos).to(tl.int64)
    m_ok = a_rows >= 0
    rn = tl.program_id(1) * BN + tl.arange(0, BN)
    rk = tl.arange(0, BK)
    w_base = w_ptr + expert * stride_we
    s_base = s_ptr + expert * stride_se
    acc = tl.zeros((BM, BN), dtype=tl.float32)
    for k0 in range(0, K, BK):
        kk = k0 + rk
        a_mask = m_ok[:, None] & (kk < K)[None, :]
        a = tl.load(a_ptr + a_rows[:, None] * stride_am + kk[None, :], mask=a_mask, other=0.0)
        w, s = weight_tile(w_base, s_base, rn, kk, k0, N, K, stride_wn, stride_sn, MODE, GROUP, DOT)
        acc += tl.dot(a.to(DOT), tl.trans(w)) * s[None, :]
    c_mask = m_ok[:, None] & (rn < N)[None, :]
    tl.store(
        c_ptr + c_rows[:, None] * stride_cm + rn[None, :], acc.to(c_ptr.dtype.element_ty), c_mask
    )


@dataclass(frozen=True, slots=True)
class _Stack:
    """One stacked projection as the kernel reads it."""

    w: torch.Tensor
    s: torch.Tensor
    mode: int
    group: int
    n: int
    k: int


def _stack(experts: StackedExperts) -> _Stack:
    if isinstance(experts, torch.Tensor):
        w = experts.contiguous()
        return _Stack(w, w, DENSE, 1, w.shape[1], w.shape[2])
    if isinstance(experts, StackedInt8Weights):
        w = experts.qweight.contiguous()
        return _Stack(w, experts.scales.contiguous(), INT8, 1, w.shape[1], w.shape[2])
    if experts.layout != "nibble":
        raise ValueError("the Triton MoE kernel reads int4 experts in the nibble layout")
    w = experts.packed.contiguous()
    return _Stack(
        w, experts.scales.contiguous(), INT4, experts.group_size, w.shape[1], experts.in_features
    )


def align_by_expert(
    topk_ids: torch.Tensor, num_experts: int, block_m: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pair indices sorted by expert, each expert's run padded to ``block_m`` with -1.

    Returns:
        ``pair_rows [tiles * block_m]`` int32 and ``tile_expert [tiles]`` int32.
    """
    flat = topk_ids.reshape(-1).long()
    order = torch.argsort(flat, stable=True)
    counts = torch.bincount(flat, minlength=num_experts)
    padded = (counts + block_m - 1) // block_m * block_m
    starts = torch.cumsum(counts, 0) - counts
    padded_starts = torch.cumsum(padded, 0) - padded
    sorted_experts = flat[order]
    rank = torch.arange(flat.numel(), device=flat.device) - starts[sorted_experts]
    rows = torch.full((int(padded.sum()),), -1, dtype=torch.int32, device=flat.device)
    rows[padded_starts[sorted_experts] + rank] = order.to(torch.int32)
    experts = torch.arange(num_experts, dtype=torch.int32, device=flat.device)
    return rows, experts.repeat_interleave(padded // block_m)


def _grouped_gemm(
    a: torch.Tensor,
    stack: _Stack,
    rows: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    out_rows: int,
    block_m: int,
) -> torch.Tensor:
    a_rows, c_rows, tile_expert = rows
    out = torch.empty(out_rows, stack.n, dtype=a.dtype, device=a.device)
    if tile_expert.numel() == 0:
        return out
    stride_sn = stack.s.stride(1) if stack.mode == INT4 else 0
    stride_se = stack.s.stride(0) if stack.mode != DENSE else 0
    grid = (tile_expert.numel(), triton.cdiv(stack.n, BLOCK_N))
    _grouped_gemm_kernel[grid](
        a, stack.w, stack.s, out, a_rows, c_rows, tile_expert, stack.n, stack.k,
        a.stride(0), stack.w.stride(0), stack.w.stride(1), stride_se, stride_sn, out.stride(0),
        MODE=stack.mode, GROUP=stack.group, BM=block_m, BN=BLOCK_N,
        BK=k_block(stack.mode, stack.group), DOT=dot_dtype(a.dtype),
    )  # fmt: skip
    return out


def triton_fused_moe(
    x: torch.Tensor,
    topk_ids: torch.Tensor,
    topk_weights: torch.Tensor,
    w_gate_up: StackedExperts,
    w_down: StackedExperts,
) -> torch.Tensor:
    """:func:`deepseek_runtime.kernels.moe.fused_moe` as two grouped GEMM launches.

    Args:
        x: ``[T, hidden]`` activations.
        topk_ids, topk_weights: ``[T, K]`` routing.
        w_gate_up: stacked ``[E, 2 * inter, hidden]`` experts (gate rows, then up rows).
        w_down: stacked ``[E, hidden, inter]`` experts.
    """
    tokens, k = topk_ids.shape
    gate_up, down = _stack(w_gate_up), _stack(w_down)
    if tokens == 0:
        return torch.zeros_like(x)
    x = x.contiguous()
    block_m = rows_block(tokens * k)
    pair_rows, tile_expert = align_by_expert(topk_ids, gate_up.w.shape[0], block_m)
    token_rows = torch.where(pair_rows >= 0, pair_rows // k, pair_rows)
    pairs = tokens * k
    gu = _grouped_gemm(x, gate_up, (token_rows, pair_rows, tile_expert), pairs, block_m)
    inter = gate_up.n // 2
    hidden = (F.silu(gu[:, :inter].float()) * gu[:, inter:].float()).to(x.dtype)
    y = _grouped_gemm(hidden, down, (pair_rows, pair_rows, tile_expert), pairs, block_m)
    weighted = y.view(tokens, k, -1).float() * topk_weights.float().unsqueeze(-1)
    return weighted.sum(dim=1).to(x.dtype)
