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
    rank = w_uk.shape[2]
    dtype = cache.dtype
    out = q_nope.new_zeros(n_tokens, n_heads, w_uv.shape[1])
    if meta.decode_query_idx.numel():
        rows = meta.decode_query_idx
        q_lat = torch.einsum("bhn,hnr->bhr", q_nope.index_select(0, rows), w_uk)
        q = torch.cat((q_lat, q_pe.index_select(0, rows)), dim=-1).to(dtype) * scale
        # gather whole blocks (contiguous rows), not single slots
        blocks = cache.view(-1, meta.block_size, cache.shape[-1])[meta.decode_blocks]
        keys = blocks.flatten(1, 2)  # [B, max_blocks * block_size, R + P]
        probs = _softmax(torch.bmm(q, keys.transpose(1, 2)), meta.decode_valid.unsqueeze(1), dtype)
        latent = torch.bmm(probs, keys[..., :rank]).to(w_uv.dtype)
        out[rows] = torch.einsum("bhr,hvr->bhv", latent, w_uv)
    for span in meta.prefills:
        qn = q_nope[span.q_start : span.q_end]
        qp = q_pe[span.q_start : span.q_end]
        ctx = cache[span.ctx_slots]  # [L, R + P]
        allowed = span.mask.unsqueeze(0)
        expand = prefill_form == "expanded" or (
            prefill_form == "auto" and expanded_is_cheaper(qn.shape[0], ctx.shape[0], w_uk, w_uv)
        )
        if expand:
            c_kv = ctx[:, :rank].to(w_uk.dtype)
            k_nope = torch.einsum("lr,hnr->hln", c_kv, w_uk)
            values = torch.einsum("lr,hvr->hlv", c_kv, w_uv)
            scores = torch.einsum("thn,hln->htl", qn, k_nope)
            scores = (scores + torch.einsum("thp,lp->htl", qp, ctx[:, rank:].to(qp.dtype))) * scale
            probs = _softmax(scores, allowed, qn.dtype)
            out[span.q_start : span.q_end] = torch.einsum("htl,hlv->thv", probs, values)
        else:
            q_lat = torch.einsum("thn,hnr->thr", qn, w_uk)
            q = torch.cat((q_lat, qp), dim=-1).to(dtype) * scale
            probs = _softmax(torch.einsum("thd,ld->htl", q, ctx), allowed, dtype)
            latent = torch.einsum("htl,lr->thr", probs, ctx[:, :rank]).to(w_uv.dtype)
            out[span.q_start : span.q_end] = torch.einsum("thr,hvr->thv", latent, w_uv)
    return out
