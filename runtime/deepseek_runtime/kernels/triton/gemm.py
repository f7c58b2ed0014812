# mypy: disable-error-code="no-untyped-def, untyped-decorator"
# ruff: noqa: N803, PLR0917
"""Weight-only GEMMs on CUDA: ``y = x @ W.T`` with W in int8, int4 or FP8 blocks.

One kernel, four weight modes chosen at compile time (``MODE``):

=====  =================  ==============================================================
MODE   weight             scale
=====  =================  ==============================================================
0      dense (bf16/fp32)  none
1      int8 ``[N, K]``    one per output row (W8A16)
2      int4 nibbles       one per row and group of ``GROUP`` columns (W4A16),
       ``[N, K // 2]``    byte ``j`` = values ``2j`` (low nibble) and ``2j + 1``, ``+8``
3      FP8 e4m3 ``[N,K]`` one per ``GROUP x GROUP`` block (DeepSeek-V3's 128x128)
=====  =================  ==============================================================

Each program computes a ``BM x BN`` tile of ``y``; per K step it loads a ``BN x BK``
weight tile, unpacks it in registers (:func:`weight_tile`), runs ``tl.dot`` on the
integer / FP8 values cast to the dot dtype (exact) and multiplies the partial sum by the
tile's scales, so no dense weight is ever written to memory. ``BK`` divides ``GROUP`` so
a K step never straddles two scale groups. Activations stay 16-bit (A16); unlike
DeepGEMM the FP8 path does not quantize activations. Small batches (GEMV) would start
too few programs to keep the device's memory busy, so K is split across a third grid
axis (:func:`choose_split_k`) and the partial sums meet by ``tl.atomic_add`` in fp32.
"""

from __future__ import annotations

from functools import cache

import torch
import triton
import triton.language as tl

from deepseek_runtime.kernels.triton.common import dot_dtype, rows_block

DENSE, INT8, INT4, FP8_BLOCK = 0, 1, 2, 3
BLOCK_N = 64


@triton.jit
def weight_tile(
    w_ptr,
    s_ptr,
    rn,
    kk,
    k0,
    N,
    K,
    stride_wn,
    stride_sn,
    MODE: tl.constexpr,
    GROUP: tl.constexpr,
    DOT: tl.constexpr,
):
    """The ``[BN, BK]`` weight tile at rows ``rn``, columns ``kk`` and its row scales."""
    n_ok = rn < N
    mask = n_ok[:, None] & (kk < K)[None, :]
    if MODE == 2:
        byte = tl.load(w_ptr + rn[:, None] * stride_wn + (kk // 2)[None, :], mask=mask, other=0)
        w = ((byte.to(tl.int32) >> ((kk % 2) * 4)[None, :]) & 0xF) - 8
        s = tl.load(s_ptr + rn * stride_sn + k0 // GROUP, mask=n_ok, other=0.0).to(tl.float32)
    elif MODE == 3:
        # no `other=` for FP8 loads (no FP8 literal); masked lanes are zeroed after the cast
        w = tl.load(w_ptr + rn[:, None] * stride_wn + kk[None, :], mask=mask)
        w = tl.where(mask, w.to(tl.float32), 0.0)
        s_at = s_ptr + (rn // GROUP) * stride_sn + k0 // GROUP
        s = tl.load(s_at, mask=n_ok, other=0.0).to(tl.float32)
    else:
        w = tl.load(w_ptr + rn[:, None] * stride_wn + kk[None, :], mask=mask, other=0)
        if MODE == 1:
            s = tl.load(s_ptr + rn, mask=n_ok, other=0.0).to(tl.float32)
        else:
            s = n_ok.to(tl.float32)
    return w.to(DOT), s


@triton.jit
def _gemm_kernel(
    a_ptr,
    w_ptr,
    s_ptr,
    c_ptr,
    M,
    N,
    K,
    k_per_split,
    stride_am,
    stride_wn,
    stride_sn,
    stride_cm,
    MODE: tl.constexpr,
    GROUP: tl.constexpr,
    BM: tl.constexpr,
    BN: tl.constexpr,
    BK: tl.constexpr,
    SPLIT: tl.constexpr,
    DOT: tl.constexpr,
):
    rm = tl.program_id(0) * BM + tl.arange(0, BM)
    rn = tl.program_id(1) * BN + tl.arange(0, BN)
    rk = tl.arange(0, BK)
    m_ok = rm < M
    k_start = tl.program_id(2) * k_per_split  # a multiple of BK
    k_end = tl.minimum(K, k_start + k_per_split)
    acc = tl.zeros((BM, BN), dtype=tl.float32)
    for k0 in range(k_start, k_end, BK):
        kk = k0 + rk
        a_mask = m_ok[:, None] & (kk < K)[None, :]
        a = tl.load(a_ptr + rm[:, None] * stride_am + kk[None, :], mask=a_mask, other=0.0)
        w, s = weight_tile(w_ptr, s_ptr, rn, kk, k0, N, K, stride_wn, stride_sn, MODE, GROUP, DOT)
        acc += tl.dot(a.to(DOT), tl.trans(w)) * s[None, :]
    c_mask = m_ok[:, None] & (rn < N)[None, :]
    c_at = c_ptr + rm[:, None] * stride_cm + rn[None, :]
    if SPLIT == 1:
        tl.store(c_at, acc.to(c_ptr.dtype.element_ty), c_mask)
    else:
        tl.atomic_add(c_at, acc, mask=c_mask)  # an fp32 buffer shared by the K splits


def k_block(mode: int, group: int) -> int:
    """K step: 64, or the group size when smaller (a step stays inside one group)."""
    if mode in (INT4, FP8_BLOCK):
        if group < 16 or group & (group - 1):
            raise ValueError(f"group size must be a power of two >= 16, got {group}")
        return min(64, group)
    return 64


@cache
def _multiprocessors(device_index: int) -> int:
    return int(torch.cuda.get_device_properties(device_index).multi_processor_count)


def choose_split_k(programs: int, k_tiles: int, multiprocessors: int) -> int:
    """K splits so that small-batch GEMMs (GEMV) still start ~2 programs per SM.

    Each split keeps at least 4 K tiles; a grid that already fills the device gets 1.
    """
    if multiprocessors <= 0 or programs >= 2 * multiprocessors:
        return 1
    return max(1, min(-(-2 * multiprocessors // programs), k_tiles // 4))


def _launch(
    x: torch.Tensor,
    w: torch.Tensor,
    scales: torch.Tensor | None,
    n: int,
    mode: int,
    group: int,
    split_k: int | None,
) -> torch.Tensor:
    if x.dim() != 2:
        raise ValueError(f"activations must be [M, K], got {tuple(x.shape)}")
    x = x.contiguous()
    m, k = x.shape
    bm, bk = rows_block(m), k_block(mode, group)
    grid_mn = (triton.cdiv(m, bm), triton.cdiv(n, BLOCK_N))
    k_tiles = triton.cdiv(k, bk)
    if split_k is None:
        sms = _multiprocessors(x.device.index or 0) if x.is_cuda else 0
        split_k = choose_split_k(grid_mn[0] * grid_mn[1], k_tiles, sms)
    split_k = max(1, min(split_k, k_tiles))
    k_per_split = triton.cdiv(k_tiles, split_k) * bk
    split_k = triton.cdiv(k, k_per_split)
    out = (
        torch.empty(m, n, dtype=x.dtype, device=x.device)
        if split_k == 1
        else torch.zeros(m, n, dtype=torch.float32, device=x.device)
    )
    s = scales if scales is not None else w
    stride_sn = s.stride(0) if s.dim() == 2 else 0
    _gemm_kernel[(*grid_mn, split_k)](
        x, w, s, out, m, n, k, k_per_split, x.stride(0), w.stride(0), stride_sn, out.stride(0),
        MODE=mode, GROUP=group, BM=bm, BN=BLOCK_N, BK=bk, SPLIT=split_k, DOT=dot_dtype(x.dtype),
    )  # fmt: skip
    return out.to(x.dtype)


def w8a16_gemm(
    x: torch.Tensor, qweight: torch.Tensor, scales: torch.Tensor, *, split_k: int | None = None
) -> torch.Tensor:
    """``x @ (qweight * scales[:, None]).T`` for int8 ``[N, K]`` and ``[N]`` scales.

    ``split_k`` (every wrapper here): K splits; by default :func:`choose_split_k`.
    """
    q, s = qweight.contiguous(), scales.contiguous()
    return _launch(x, q, s, qweight.shape[0], INT8, 1, split_k)


def w4a16_gemm(
    x: torch.Tensor,
    packed: torch.Tensor,
    scales: torch.Tensor,
    group_size: int,
    *,
    split_k: int | None = None,
) -> torch.Tensor:
    """``x @ W.T`` for nibble-packed int4 ``[N, K // 2]`` and ``[N, K // g]`` scales."""
    p, s = packed.contiguous(), scales.contiguous()
    return _launch(x, p, s, packed.shape[0], INT4, group_size, split_k)


def fp8_block_gemm(
    x: torch.Tensor,
    weight: torch.Tensor,
    scale_inv: torch.Tensor,
    block: int = 128,
    *,
    split_k: int | None = None,
) -> torch.Tensor:
    """``x @ W.T`` for FP8 e4m3 ``[N, K]`` with ``[ceil(N / b), ceil(K / b)]`` scales."""
    scales = scale_inv.float().contiguous()
    return _launch(x, weight.contiguous(), scales, weight.shape[0], FP8_BLOCK, block, split_k)


def dense_gemm(
    x: torch.Tensor, weight: torch.Tensor, *, split_k: int | None = None
) -> torch.Tensor:
    """``x @ weight.T`` through the same kernel (the baseline of the GPU benchmark)."""
    return _launch(x, weight.contiguous(), None, weight.shape[0], DENSE, 1, split_k)
