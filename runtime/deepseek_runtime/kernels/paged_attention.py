"""Attention over a paged MLA latent cache (weight-absorbed form), reference on CPU.

Called by :class:`deepseek_runtime.model.attention.MLAAttention`. Each cache slot holds one
token's latent ``[c_kv (kv_lora_rank) | k_pe (qk_rope_head_dim)]``. The query arrives
already absorbed into latent space, ``q = [q_nope @ W_uk | q_pe]``, so the score against a
slot is one dot product and the output is a weighted sum of ``c_kv`` (the caller applies
``W_uv``)::

    score[t, h, j] = scale * <q[t, h, :], cache[slot_j, :]>
    out[t, h, :]   = sum_j softmax_j(score) * cache[slot_j, :kv_lora_rank]

Single-token (decode) queries are batched into one padded ``bmm``; each multi-token
(prefill) chunk runs as one masked matmul against its own context.
"""

from __future__ import annotations

from dataclasses import dataclass

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
    decode_slots: torch.Tensor  # [B, Lmax] long, padded with slot 0
    decode_valid: torch.Tensor  # [B, Lmax] bool
    prefills: tuple[PrefillSpan, ...]


def paged_mla_attention(
    q: torch.Tensor,
    cache: torch.Tensor,
    meta: PagedAttentionMetadata,
    scale: float,
    latent_dim: int,
) -> torch.Tensor:
    """Latent attention output ``[T, H, latent_dim]`` for queries ``q`` ``[T, H, D]``."""
    n_tokens, n_heads, _ = q.shape
    out = q.new_zeros(n_tokens, n_heads, latent_dim)
    if meta.decode_query_idx.numel():
        qd = q.index_select(0, meta.decode_query_idx)  # [B, H, D]
        keys = cache[meta.decode_slots]  # [B, L, D]
        scores = torch.bmm(qd, keys.transpose(1, 2)) * scale  # [B, H, L]
        scores = scores.masked_fill(~meta.decode_valid.unsqueeze(1), float("-inf"))
        probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
        out[meta.decode_query_idx] = torch.bmm(probs, keys[..., :latent_dim])
    for span in meta.prefills:
        qp = q[span.q_start : span.q_end]  # [t, H, D]
        keys = cache[span.ctx_slots]  # [L, D]
        scores = torch.einsum("thd,ld->htl", qp, keys) * scale
        scores = scores.masked_fill(~span.mask.unsqueeze(0), float("-inf"))
        probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
        out[span.q_start : span.q_end] = torch.einsum("htl,lr->thr", probs, keys[:, :latent_dim])
    return out
