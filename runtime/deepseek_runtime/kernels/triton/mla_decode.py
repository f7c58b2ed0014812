# mypy: disable-error-code="no-untyped-def, untyped-decorator"
# ruff: noqa: N803, PLR0917
"""Paged MLA decode attention on CUDA, in the absorbed form, over the latent cache.

The cache of one layer is ``[num_slots, R + P]`` (``R = kv_lora_rank`` latent, then
``P = qk_rope_head_dim`` rotary key), slot ``s`` living in block ``s // block_size``
(see :mod:`deepseek_runtime.kernels.paged_attention`). With ``W_uk`` folded into the
query, every head scores the latents directly::

    q = [q_nope W_uk | q_pe] * scale            [B, H, R + P]   (torch, before the kernel)
    latent_b = softmax_j(q . cache_j) . c_kv_j  over j < seq_lens[b]   (this kernel)
    out = latent W_uv^T                          [B, H, v]       (torch, after)

The torch steps around it live in :func:`deepseek_runtime.kernels.mla_decode.paged_mla_decode`.

Program ``(b, h-tile, split)`` walks its share of sequence ``b``'s block table one block
at a time with an online softmax (running max and sum in fp32), so scores are never
materialised beyond one ``BH x block_size`` tile and each block's latents are read once
for all the heads in the tile. With few sequences the context is split (flash-decoding)
so that the device stays busy; :func:`combine_splits` merges the partial sums.
Inputs: ``block_tables [B, max_blocks]`` and ``seq_lens [B]`` int32.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from deepseek_runtime.kernels.triton.common import dot_dtype, interpreting, next_power_of_2

HEADS_BLOCK = 16


@triton.jit
def _mla_decode_kernel(
    q_ptr,
    cache_ptr,
    tables_ptr,
    lens_ptr,
    acc_ptr,
    stats_ptr,
    H,
    ctx_per_split,
    stride_qb,
    stride_qh,
    stride_cs,
    stride_tb,
    R: tl.constexpr,
    P: tl.constexpr,
    RP: tl.constexpr,
    PP: tl.constexpr,
    BLOCK: tl.constexpr,
    BH: tl.constexpr,
    SPLITS: tl.constexpr,
    DOT: tl.constexpr,
):
    b = tl.program_id(0)
    h = tl.program_id(1) * BH + tl.arange(0, BH)
    split = tl.program_id(2)
    h_ok = h < H
    dr = tl.arange(0, RP)
    dp = tl.arange(0, PP)
    q_row = q_ptr + b * stride_qb + h[:, None] * stride_qh
    q_lat = tl.load(q_row + dr[None, :], mask=h_ok[:, None] & (dr < R)[None, :], other=0.0)
    q_pe = tl.load(q_row + R + dp[None, :], mask=h_ok[:, None] & (dp < P)[None, :], other=0.0)
    q_lat = q_lat.to(DOT)
    q_pe = q_pe.to(DOT)
    length = tl.load(lens_ptr + b)
    first = split * ctx_per_split  # a multiple of BLOCK
    last = tl.minimum(length, first + ctx_per_split)
    m_i = tl.full([BH], float("-inf"), tl.float32)
    l_i = tl.zeros([BH], tl.float32)
    acc = tl.zeros([BH, RP], tl.float32)
    offs = tl.arange(0, BLOCK)
    for start in range(first, last, BLOCK):
        block = tl.load(tables_ptr + b * stride_tb + start // BLOCK).to(tl.int64)
        t_ok = start + offs < last
        slot = block * BLOCK + offs
        c_kv = tl.load(
            cache_ptr + slot[:, None] * stride_cs + dr[None, :],
            mask=t_ok[:, None] & (dr < R)[None, :],
            other=0.0,
        ).to(DOT)
        k_pe = tl.load(
            cache_ptr + slot[:, None] * stride_cs + R + dp[None, :],
            mask=t_ok[:, None] & (dp < P)[None, :],
            other=0.0,
        ).to(DOT)
        scores = tl.dot(q_lat, tl.trans(c_kv)) + tl.dot(q_pe, tl.trans(k_pe))
        scores = tl.where(t_ok[None, :], scores, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(scores, axis=1))
        probs = tl.exp(scores - m_new[:, None])
        alpha = tl.exp(m_i - m_new)
        l_i = l_i * alpha + tl.sum(probs, axis=1)
        acc = acc * alpha[:, None] + tl.dot(probs.to(DOT), c_kv)
        m_i = m_new
    # partial results of this split: unnormalised latent sums, running max and sum
    row = (b * H + h) * SPLITS + split  # [BH] rows of [B, H, SPLITS]
    o_mask = h_ok[:, None] & (dr < R)[None, :]
    tl.store(acc_ptr + row[:, None] * R + dr[None, :], acc, o_mask)
    tl.store(stats_ptr + row * 2, m_i, h_ok)
    tl.store(stats_ptr + row * 2 + 1, l_i, h_ok)


def choose_splits(programs: int, max_len: int, block_size: int, multiprocessors: int) -> int:
    """Context splits (flash-decoding) so that ~2 programs per SM run, each >= 4 blocks."""
    if multiprocessors <= 0 or programs >= 2 * multiprocessors:
        return 1
    return max(1, min(-(-2 * multiprocessors // programs), max_len // (4 * block_size)))


def combine_splits(acc: torch.Tensor, stats: torch.Tensor) -> torch.Tensor:
    """Merge per-split partials ``acc [B, H, S, R]``, ``stats [B, H, S, (max, sum)]``."""
    m, l_sum = stats[..., 0], stats[..., 1]
    m_max = m.amax(dim=-1, keepdim=True)
    m_max = torch.where(torch.isinf(m_max), torch.zeros_like(m_max), m_max)  # empty rows
    weight = torch.exp(m - m_max)  # 0 for splits that saw no token
    total = (l_sum * weight).sum(dim=-1).clamp(min=1e-30)
    return (acc * weight.unsqueeze(-1)).sum(dim=2) / total.unsqueeze(-1)


def mla_decode_latent(
    q: torch.Tensor,
    cache: torch.Tensor,
    block_tables: torch.Tensor,
    seq_lens: torch.Tensor,
    *,
    rank: int,
    block_size: int,
    splits: int | None = None,
) -> torch.Tensor:
    """``softmax(q . cache) . c_kv`` per sequence: ``[B, H, rank]`` fp32.

    Args:
        q: ``[B, H, rank + rope]`` absorbed, scaled queries.
        cache: ``[num_slots, rank + rope]`` one layer's latents.
        block_tables: ``[B, max_blocks]`` block ids; seq_lens: ``[B]`` context lengths.
        rank: ``kv_lora_rank``; block_size: cache slots per block (>= 16 on a GPU,
            the smallest ``tl.dot`` tile).
        splits: context splits per sequence, merged afterwards (flash-decoding); by
            default :func:`choose_splits` for the device.
    """
    batch, heads, width = q.shape
    rope = width - rank
    if not interpreting() and block_size < 16:
        raise ValueError(f"the Triton MLA kernel needs block_size >= 16, got {block_size}")
    if block_size & (block_size - 1):
        raise ValueError(f"block_size must be a power of two, got {block_size}")
    q = q.to(cache.dtype).contiguous()
    tables = block_tables.to(torch.int32).contiguous()
    lens = seq_lens.to(torch.int32).contiguous()
    max_blocks = tables.shape[1]
    head_tiles = triton.cdiv(heads, HEADS_BLOCK)
    if splits is None:
        sms = torch.cuda.get_device_properties(q.device).multi_processor_count if q.is_cuda else 0
        splits = choose_splits(batch * head_tiles, max_blocks * block_size, block_size, sms)
    splits = max(1, min(splits, max_blocks))
    ctx_per_split = triton.cdiv(max_blocks, splits) * block_size
    acc = torch.empty(batch, heads, splits, rank, dtype=torch.float32, device=q.device)
    stats = torch.empty(batch, heads, splits, 2, dtype=torch.float32, device=q.device)
    _mla_decode_kernel[(batch, head_tiles, splits)](
        q, cache, tables, lens, acc, stats, heads, ctx_per_split,
        q.stride(0), q.stride(1), cache.stride(0), tables.stride(0),
        R=rank, P=rope, RP=next_power_of_2(rank), PP=next_power_of_2(max(rope, 1)),
        BLOCK=block_size, BH=HEADS_BLOCK, SPLITS=splits, DOT=dot_dtype(cache.dtype),
    )  # fmt: skip
    return combine_splits(acc, stats)
