"""Grouped-query attention over a paged K/V cache, reference on CPU (Qwen2 / Llama layers).

Called by :class:`deepseek_runtime.model.gqa_attention.GQAAttention`. Each cache slot holds
one token's keys and values for all KV heads, side by side::

    slot row = [ k (kv_heads x head_dim) | v (kv_heads x head_dim) ]

so a layer's cache is one ``[num_slots, 2 * kv_heads * head_dim]`` tensor and blocks,
slot mapping and block tables are exactly those of the MLA latent cache: the scheduler
and KV manager do not know which layer kind they page. ``num_heads / kv_heads`` query
heads share each KV head (GQA; 1 is ordinary multi-head attention).

The same :class:`~deepseek_runtime.kernels.paged_attention.PagedAttentionMetadata` drives
it: single-token (decode) queries are batched into one padded gather over their block
tables; each multi-token chunk attends causally over its own context.
"""

from __future__ import annotations

import torch

from deepseek_runtime.kernels.paged_attention import SCORE_BUDGET, PagedAttentionMetadata


def paged_gqa_attention(
    q: torch.Tensor,
    cache: torch.Tensor,
    meta: PagedAttentionMetadata,
    *,
    num_kv_heads: int,
    scale: float,
) -> torch.Tensor:
    """Attention output ``[T, H, head_dim]`` (before ``o_proj``).

    Args:
        q: ``[T, H, head_dim]`` queries (already rotated).
        cache: ``[num_slots, 2 * num_kv_heads * head_dim]`` one layer's K/V rows, already
            holding this step's new tokens.
        meta: where each query reads its context.
        num_kv_heads: KV heads; ``H`` must be a multiple of it.
        scale: softmax scale (``head_dim ** -0.5``).
    """
    n_tokens, n_heads, head_dim = q.shape
    group = n_heads // num_kv_heads
    out = q.new_zeros(n_tokens, n_heads, head_dim)
    # [T, kv_heads, group, d]: query head h reads KV head h // group (transformers' repeat_kv)
    grouped = q.view(n_tokens, num_kv_heads, group, head_dim)
    if meta.decode_idx.numel():
        rows, tables, valid = meta.decode_view()
        paged = cache.view(-1, meta.block_size, cache.shape[-1])
        for b0, b1 in _tiles(rows.numel(), valid.shape[1] * (cache.shape[-1] + n_heads)):
            ctx = paged[tables[b0:b1]].flatten(1, 2)  # [B, L, 2 * kvh * d]
            keys, values = _split(ctx, num_kv_heads, head_dim)  # [B, L, kvh, d]
            qb = grouped.index_select(0, rows[b0:b1]).to(cache.dtype)
            scores = torch.einsum("bkgd,blkd->bkgl", qb, keys) * scale
            probs = _softmax(scores, valid[b0:b1][:, None, None, :], cache.dtype)
            attn = torch.einsum("bkgl,blkd->bkgd", probs, values)
            out[rows[b0:b1]] = attn.reshape(-1, n_heads, head_dim).to(out.dtype)
    for index, (_, q_start, q_end, _) in enumerate(meta.prefill_spans):
        ctx_slots, mask = meta.span_context(index)
        keys, values = _split(cache[ctx_slots], num_kv_heads, head_dim)  # [L, kvh, d]
        q_len, ctx_len = q_end - q_start, keys.shape[0]
        for t0, t1 in _tiles(q_len, n_heads * ctx_len):
            a, b = q_start + t0, q_start + t1
            qs = grouped[a:b].to(cache.dtype)
            scores = torch.einsum("tkgd,lkd->kgtl", qs, keys) * scale
            probs = _softmax(scores, mask[t0:t1][None, None], cache.dtype)
            attn = torch.einsum("kgtl,lkd->tkgd", probs, values)
            out[a:b] = attn.reshape(b - a, n_heads, head_dim).to(out.dtype)
    return out


def _split(rows: torch.Tensor, kv_heads: int, head_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    half = kv_heads * head_dim
    k, v = rows[..., :half], rows[..., half:]
    shape = (*rows.shape[:-1], kv_heads, head_dim)
    return k.reshape(shape), v.reshape(shape)


def _softmax(scores: torch.Tensor, allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    scores = scores.masked_fill(~allowed, float("-inf"))
    return torch.softmax(scores, dim=-1, dtype=torch.float32).to(dtype)


def _tiles(rows: int, per_row: int) -> list[tuple[int, int]]:
    step = max(1, SCORE_BUDGET // max(1, per_row))
    return [(i, min(i + step, rows)) for i in range(0, rows, step)]
