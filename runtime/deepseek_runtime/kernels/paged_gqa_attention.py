"""Grouped-query attention over a paged K/V cache, reference on CPU (Qwen2 / Llama layers).

Called by :class:`deepseek_runtime.model.gqa_attention.GQAAttention`. Each cache slot holds
one token's keys and values for all KV heads, side by side::

    slot row = [ k (kv_heads x head_dim) | v (kv_heads x head_dim) ]

so a layer's cache is one ``[num_slots, 2 * kv_heads * head_dim]`` tensor and blocks,
slot mapping and block tables are exactly those of the MLA latent cache: the scheduler
and KV manager do not know which layer kind they page. ``num_heads / kv_heads`` query
heads share each KV head (GQA; 1 is ordinary multi-head attention).

The same :class:`~deepseek_runtime.kernels.paged_attention.PagedAttentionMetadata` drives
it. What costs time on a CPU is moving the context, not the few multiply-adds per cached
value, so:

* decode (single-token) queries are sorted by context length and cut into tiles
  (:mod:`~deepseek_runtime.kernels.gqa_decode_plan`, once per step for all layers), each
  padded only to its own longest context; a tile gathers its whole blocks once
  (``index_select``, contiguous block rows) and every KV head's keys and values are
  strided views of that one copy, fed to ``bmm`` as they are. Queries are grouped as
  ``[rows, kv_heads, group, d]``, so KV heads are never repeated per query head;
* each multi-token (prefill) chunk gathers its context slots once and runs one
  ``scaled_dot_product_attention`` with GQA (no score matrix materialised), masked
  causally from the chunk's offset in its sequence.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from deepseek_runtime.kernels.gqa_decode_plan import DecodePlanner, DecodeTile, plan_decode
from deepseek_runtime.kernels.paged_attention import (
    PagedAttentionMetadata,
    native_decode_applies,
)


def paged_gqa_attention(
    q: torch.Tensor,
    cache: torch.Tensor,
    meta: PagedAttentionMetadata,
    *,
    num_kv_heads: int,
    scale: float,
    planner: DecodePlanner | None = None,
) -> torch.Tensor:
    """Attention output ``[T, H, head_dim]`` (before ``o_proj``).

    Args:
        q: ``[T, H, head_dim]`` queries (already rotated).
        cache: ``[num_slots, 2 * num_kv_heads * head_dim]`` one layer's K/V rows, already
            holding this step's new tokens.
        meta: where each query reads its context.
        num_kv_heads: KV heads; ``H`` must be a multiple of it.
        scale: softmax scale (``head_dim ** -0.5``).
        planner: shares one decode tiling between the layers of a step (the model's
            layers pass the same one); None plans afresh.
    """
    n_tokens, n_heads, head_dim = q.shape
    if n_heads % num_kv_heads or cache.shape[-1] != 2 * num_kv_heads * head_dim:
        raise ValueError(
            f"{n_heads} query heads, {num_kv_heads} KV heads of {head_dim} and cache rows "
            f"of {cache.shape[-1]} do not fit together"
        )
    # every query row belongs to exactly one decode chunk or prefill span
    out = q.new_empty(n_tokens, n_heads, head_dim)
    if native_decode_applies(meta, cache, head_dim):
        _decode_native(out, q, cache, meta, kv_heads=num_kv_heads, scale=scale)
    else:
        per_slot = cache.shape[-1] + n_heads
        tiles = plan_decode(meta, per_slot) if planner is None else planner.tiles(meta, per_slot)
        paged = cache.view(-1, meta.block_size, cache.shape[-1])
        for tile in tiles:
            attn = _decode_tile(q, paged, tile, num_kv_heads, scale)
            out.index_copy_(0, tile.rows, attn.to(out.dtype))
    for index, (_, q_start, q_end, _) in enumerate(meta.prefill_spans):
        if q_end > q_start:
            out[q_start:q_end] = _prefill_span(q[q_start:q_end], cache, meta, index, scale)
    return out


def _decode_native(
    out: torch.Tensor,
    q: torch.Tensor,
    cache: torch.Tensor,
    meta: PagedAttentionMetadata,
    *,
    kv_heads: int,
    scale: float,
) -> None:
    """Every single-token query in one ``torch.ops.dsr_cpu.gqa_decode`` call, which reads
    each row's blocks where they are (no gather, no padding, no mask)."""
    if not meta.decode_idx.numel():
        return
    rows = meta.query_start_loc.index_select(0, meta.decode_idx)
    attn = torch.ops.dsr_cpu.gqa_decode(
        q.index_select(0, rows).contiguous(),
        cache,
        meta.block_tables.index_select(0, meta.decode_idx),
        meta.seq_lens.index_select(0, meta.decode_idx),
        meta.block_size,
        kv_heads,
        scale,
    )
    out.index_copy_(0, rows, attn)


def _decode_tile(
    q: torch.Tensor, paged: torch.Tensor, tile: DecodeTile, kv_heads: int, scale: float
) -> torch.Tensor:
    """``[rows, H, d]`` for one tile of single-token queries.

    Shapes (``b`` rows, ``L`` = tile width in slots, ``g`` query heads per KV head)::

        ctx   [b, L, 2, kv_heads, d]   one gathered copy of the tile's blocks
        k_j   ctx[:, :, 0, j]  [b, L, d]   (strided view, rows 2 * kv_heads * d apart)
        q_j   [b, g, d]  ->  scores [b, g, L]  ->  probs @ v_j  ->  [b, g, d]
    """
    rows, (_, block_size, width) = tile.rows.numel(), paged.shape
    head_dim = width // (2 * kv_heads)
    slots = tile.tables.shape[1] * block_size
    ctx = paged.index_select(0, tile.tables.reshape(-1)).view(rows, slots, 2, kv_heads, head_dim)
    grouped = q.index_select(0, tile.rows).to(paged.dtype)
    grouped = grouped.view(rows, kv_heads, -1, head_dim)
    out = torch.empty_like(grouped)
    scores = grouped.new_empty(rows, grouped.shape[2], slots)
    for j in range(kv_heads):
        keys_t = ctx[:, :, 0, j].transpose(1, 2)
        scores.baddbmm_(grouped[:, j], keys_t, beta=0.0, alpha=scale)  # beta 0: old ignored
        scores.masked_fill_(tile.padding, float("-inf"))
        probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(paged.dtype)
        out[:, j] = torch.bmm(probs, ctx[:, :, 1, j])
    return out.view(rows, -1, head_dim)


def _prefill_span(
    q: torch.Tensor, cache: torch.Tensor, meta: PagedAttentionMetadata, index: int, scale: float
) -> torch.Tensor:
    """``[t, H, d]`` for prefill span ``index``: its queries against its whole context."""
    n_heads, head_dim = q.shape[1], q.shape[2]
    ctx_slots, allowed = meta.span_context(index)
    ctx = cache.index_select(0, ctx_slots).view(ctx_slots.numel(), 2, -1, head_dim)
    keys = ctx[:, 0].transpose(0, 1).unsqueeze(0)  # [1, kv_heads, L, d]
    values = ctx[:, 1].transpose(0, 1).unsqueeze(0)
    queries = q.to(cache.dtype).transpose(0, 1).unsqueeze(0)  # [1, H, t, d]
    attn = F.scaled_dot_product_attention(
        queries,
        keys,
        values,
        attn_mask=allowed,
        scale=scale,
        enable_gqa=keys.shape[1] != n_heads,
    )
    return attn[0].transpose(0, 1).to(q.dtype)
