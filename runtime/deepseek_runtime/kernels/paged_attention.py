"""Multi-head latent attention over a paged MLA latent cache, reference on CPU.

Called by :class:`deepseek_runtime.model.attention.MLAAttention`. Each cache slot holds one
token's latent ``[c_kv (kv_lora_rank) | k_pe (qk_rope_head_dim)]``; per head,
``k_nope = W_uk c_kv`` and ``v = W_uv c_kv`` (the two halves of ``kv_b_proj``).

Two equivalent ways to evaluate it, chosen by cost:

* absorbed (decode, short chunks): fold ``W_uk`` into the query and ``W_uv`` into the
  output, so attention runs over the latents themselves and nothing is expanded::

      q_lat = q_nope W_uk;  score_j = <[q_lat | q_pe], cache_j>;  out = (sum_j p_j c_j) W_uv^T

* expanded (long prefill chunks): build per-head ``k_nope`` and ``v`` for the chunk's
  context once, then ordinary attention; cheaper when many queries share a context.

Single-token (decode) queries are batched into one padded ``bmm``; each multi-token
chunk runs as one masked attention against its own context.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch


@dataclass(frozen=True, slots=True)
class PrefillSpan:
    """One multi-token chunk: queries ``[q_start, q_end)`` attend over ``ctx_slots``."""

    q_start: int
    q_end: int
    ctx_slots: torch.Tensor  # [L] long
    mask: torch.Tensor  # [q_len, L] bool, True where attention is allowed (causal)


@dataclass(frozen=True, slots=True)
class PagedAttentionMetadata:
    """Where each query token reads its context from; built once per step, shared by layers."""

    slot_mapping: torch.Tensor  # [T] long: the cache slot each new token is written to
    decode_query_idx: torch.Tensor  # [B] long: query rows of single-token chunks
    decode_blocks: torch.Tensor  # [B, max_blocks] long: block tables, padded with block 0
    decode_valid: torch.Tensor  # [B, max_blocks * block_size] bool: slot holds context
    prefills: tuple[PrefillSpan, ...]
    block_size: int


def _softmax(scores: torch.Tensor, allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    scores = scores.masked_fill(~allowed, float("-inf"))
    return torch.softmax(scores, dim=-1, dtype=torch.float32).to(dtype)


def expanded_is_cheaper(q_len: int, ctx_len: int, w_uk: torch.Tensor, w_uv: torch.Tensor) -> bool:
    """Multiply-adds of the expanded form below those of the absorbed form for one chunk."""
    heads, nope, rank = w_uk.shape
    v_dim = w_uv.shape[1]
    # (the rotary part of the scores costs the same in both forms)
    absorbed = q_len * heads * nope * rank + q_len * ctx_len * heads * 2 * rank
    absorbed += q_len * heads * rank * v_dim
    expanded = ctx_len * heads * rank * (nope + v_dim) + q_len * ctx_len * heads * (nope + v_dim)
    return expanded < absorbed


def paged_mla_attention(
    q_nope: torch.Tensor,
    q_pe: torch.Tensor,
    cache: torch.Tensor,
    meta: PagedAttentionMetadata,
    *,
    scale: float,
    w_uk: torch.Tensor,
    w_uv: torch.Tensor,
    prefill_form: Literal["auto", "absorbed", "expanded"] = "auto",
) -> torch.Tensor:
    """Attention output ``[T, H, v_head_dim]`` (before ``o_proj``).

    Args:
        q_nope: ``[T, H, qk_nope_head_dim]`` query, non-rotary part.
        q_pe: ``[T, H, qk_rope_head_dim]`` query, rotary part (already rotated).
        cache: ``[num_slots, kv_lora_rank + qk_rope_head_dim]`` one layer's latents,
            already holding this step's new tokens.
        meta: where each query reads its context.
        scale: softmax scale.
        w_uk: ``[H, qk_nope_head_dim, kv_lora_rank]``; w_uv: ``[H, v_head_dim, kv_lora_rank]``.
        prefill_form: how multi-token chunks are evaluated (``auto``: cheaper form).
    """
    n_tokens, n_heads, _ = q_nope.shape
    out = q_nope.new_zeros(n_tokens, n_heads, w_uv.shape[1])
    rows = meta.decode_query_idx
    if rows.numel():
        # batch tiles keep the gathered keys and the scores bounded in memory
        width = meta.decode_blocks.shape[1] * meta.block_size
        for b0, b1 in _tiles(rows.numel(), width * (cache.shape[-1] + n_heads)):
            out[rows[b0:b1]] = _decode(
                (q_nope.index_select(0, rows[b0:b1]), q_pe.index_select(0, rows[b0:b1])),
                cache,
                meta.decode_blocks[b0:b1],
                meta.decode_valid[b0:b1],
                block_size=meta.block_size,
                weights=(scale, w_uk, w_uv),
            )
    for span in meta.prefills:
        ctx = cache[span.ctx_slots]  # [L, R + P]
        q_len, ctx_len = span.q_end - span.q_start, ctx.shape[0]
        expand = prefill_form == "expanded" or (
            prefill_form == "auto" and expanded_is_cheaper(q_len, ctx_len, w_uk, w_uv)
        )
        kv = _expand(ctx, w_uk, w_uv) if expand else None
        for t0, t1 in _tiles(q_len, n_heads * ctx_len):
            a, b = span.q_start + t0, span.q_start + t1
            out[a:b] = _prefill(
                (q_nope[a:b], q_pe[a:b]), ctx, kv, span.mask[t0:t1], weights=(scale, w_uk, w_uv)
            )
    return out


SCORE_BUDGET = 1 << 24  # elements of scores / gathered keys materialised at once


def _tiles(rows: int, per_row: int) -> list[tuple[int, int]]:
    step = max(1, SCORE_BUDGET // max(1, per_row))
    return [(i, min(i + step, rows)) for i in range(0, rows, step)]


_Weights = tuple[float, torch.Tensor, torch.Tensor]  # scale, w_uk, w_uv


def _decode(
    q: tuple[torch.Tensor, torch.Tensor],
    cache: torch.Tensor,
    block_tables: torch.Tensor,
    valid: torch.Tensor,
    *,
    block_size: int,
    weights: _Weights,
) -> torch.Tensor:
    """Absorbed attention for single-token queries over their gathered blocks."""
    (q_nope, q_pe), (scale, w_uk, w_uv) = q, weights
    rank = w_uk.shape[2]
    q_lat = torch.einsum("bhn,hnr->bhr", q_nope, w_uk)
    q_full = torch.cat((q_lat, q_pe), dim=-1).to(cache.dtype) * scale
    # gather whole blocks (contiguous rows), not single slots
    keys = cache.view(-1, block_size, cache.shape[-1])[block_tables].flatten(1, 2)
    probs = _softmax(torch.bmm(q_full, keys.transpose(1, 2)), valid.unsqueeze(1), cache.dtype)
    latent = torch.bmm(probs, keys[..., :rank]).to(w_uv.dtype)
    return torch.einsum("bhr,hvr->bhv", latent, w_uv)


def _expand(
    ctx: torch.Tensor, w_uk: torch.Tensor, w_uv: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-head ``k_nope`` ``[H, L, nope]`` and ``v`` ``[H, L, v]`` of a context."""
    c_kv = ctx[:, : w_uk.shape[2]].to(w_uk.dtype)
    return torch.einsum("lr,hnr->hln", c_kv, w_uk), torch.einsum("lr,hvr->hlv", c_kv, w_uv)


def _prefill(
    q: tuple[torch.Tensor, torch.Tensor],
    ctx: torch.Tensor,
    expanded: tuple[torch.Tensor, torch.Tensor] | None,
    mask: torch.Tensor,
    *,
    weights: _Weights,
) -> torch.Tensor:
    """Queries of one chunk (a tile of it) against its context, in either form."""
    (q_nope, q_pe), (scale, w_uk, w_uv) = q, weights
    rank = w_uk.shape[2]
    allowed = mask.unsqueeze(0)
    if expanded is not None:
        k_nope, values = expanded
        scores = torch.einsum("thn,hln->htl", q_nope, k_nope)
        scores = scores + torch.einsum("thp,lp->htl", q_pe, ctx[:, rank:].to(q_pe.dtype))
        probs = _softmax(scores * scale, allowed, q_nope.dtype)
        return torch.einsum("htl,hlv->thv", probs, values)
    q_lat = torch.einsum("thn,hnr->thr", q_nope, w_uk)
    q_full = torch.cat((q_lat, q_pe), dim=-1).to(ctx.dtype) * scale
    probs = _softmax(torch.einsum("thd,ld->htl", q_full, ctx), allowed, ctx.dtype)
    latent = torch.einsum("htl,lr->thr", probs, ctx[:, :rank]).to(w_uv.dtype)
    return torch.einsum("thr,hvr->thv", latent, w_uv)
