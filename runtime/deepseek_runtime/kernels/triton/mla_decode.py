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

Program ``(b, h-tile)`` walks sequence ``b``'s block table one block at a time with an
online softmax (running max and sum in fp32), so scores are never materialised beyond
one ``BH x block_size`` tile and each block's latents are read once for all the heads
in the tile. Inputs: ``block_tables [B, max_blocks]`` and ``seq_lens [B]`` int32.
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
    out_ptr,
    H,
    stride_qb,
    stride_qh,
    stride_cs,
    stride_tb,
    stride_ob,
    stride_oh,
    R: tl.constexpr,
    P: tl.constexpr,
    RP: tl.constexpr,
    PP: tl.constexpr,
    BLOCK: tl.constexpr,
    BH: tl.constexpr,
    DOT: tl.constexpr,
):
    b = tl.program_id(0)
    h = tl.program_id(1) * BH + tl.arange(0, BH)
    h_ok = h < H
    dr = tl.arange(0, RP)
    dp = tl.arange(0, PP)
    q_row = q_ptr + b * stride_qb + h[:, None] * stride_qh
    q_lat = tl.load(q_row + dr[None, :], mask=h_ok[:, None] & (dr < R)[None, :], other=0.0)
    q_pe = tl.load(q_row + R + dp[None, :], mask=h_ok[:, None] & (dp < P)[None, :], other=0.0)
    q_lat = q_lat.to(DOT)
    q_pe = q_pe.to(DOT)
    length = tl.load(lens_ptr + b)
    m_i = tl.full([BH], float("-inf"), tl.float32)
    l_i = tl.zeros([BH], tl.float32)
    acc = tl.zeros([BH, RP], tl.float32)
    offs = tl.arange(0, BLOCK)
    for start in range(0, length, BLOCK):
        block = tl.load(tables_ptr + b * stride_tb + start // BLOCK).to(tl.int64)
        t_ok = start + offs < length
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
    out = acc / tl.maximum(l_i, 1e-30)[:, None]
    o_mask = h_ok[:, None] & (dr < R)[None, :]
    o_at = out_ptr + b * stride_ob + h[:, None] * stride_oh + dr[None, :]
    tl.store(o_at, out.to(out_ptr.dtype.element_ty), o_mask)


def mla_decode_latent(
    q: torch.Tensor,
    cache: torch.Tensor,
    block_tables: torch.Tensor,
    seq_lens: torch.Tensor,
    *,
    rank: int,
    block_size: int,
) -> torch.Tensor:
    """``softmax(q . cache) . c_kv`` per sequence: ``[B, H, rank]`` fp32.

    Args:
        q: ``[B, H, rank + rope]`` absorbed, scaled queries.
        cache: ``[num_slots, rank + rope]`` one layer's latents.
        block_tables: ``[B, max_blocks]`` block ids; seq_lens: ``[B]`` context lengths.
        rank: ``kv_lora_rank``; block_size: cache slots per block (>= 16 on a GPU,
            the smallest ``tl.dot`` tile).
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
    out = torch.empty(batch, heads, rank, dtype=torch.float32, device=q.device)
    grid = (batch, triton.cdiv(heads, HEADS_BLOCK))
    _mla_decode_kernel[grid](
        q, cache, tables, lens, out, heads, q.stride(0), q.stride(1), cache.stride(0),
        tables.stride(0), out.stride(0), out.stride(1),
        R=rank, P=rope, RP=next_power_of_2(rank), PP=next_power_of_2(max(rope, 1)),
        BLOCK=block_size, BH=HEADS_BLOCK, DOT=dot_dtype(cache.dtype),
    )  # fmt: skip
    return out
