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

Single-token (decode) queries are sorted by context length and cut into tiles whose
gathered blocks stay within :data:`DECODE_TILE_BUDGET` elements (a few MiB: they are still
in cache when the two ``bmm`` read them), each tile padded only to its own longest context;
the per-head absorption into and out of the latent runs once over all decode rows (on
CUDA, the Triton latent kernel of :mod:`deepseek_runtime.kernels.mla_decode` reads the
blocks in place instead). Each multi-token chunk runs as one masked attention against its
own context. The metadata is the GPU-shaped
``query_start_loc`` / ``seq_lens`` / ``block_tables`` of :class:`PagedAttentionMetadata`;
the per-chunk context slots and causal masks are derived from it here, not by the runner.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from deepseek_runtime.kernels.dispatch import backend_for


@dataclass(frozen=True, slots=True)
class PagedAttentionMetadata:
    """Where each new token writes and reads the paged cache, shaped as GPU kernels take it
    (FlashAttention's ``cu_seqlens`` plus vLLM's block tables); built once per step by the
    model runner and shared by every layer.

    Chunk ``b`` (one sequence's new tokens) owns query rows
    ``query_start_loc[b] .. query_start_loc[b + 1]`` and, after this step, ``seq_lens[b]``
    cached tokens whose slots are ``block_tables[b, p // block_size] * block_size +
    p % block_size``. Its new tokens are the last ``q_len`` of them, so query ``i`` may
    attend to positions ``<= seq_lens[b] - q_len + i`` (causal).

    ``decode_idx`` (chunks with one new token) and ``prefill_spans`` (host ints ``(chunk,
    q_start, q_end, seq_len)`` of the other chunks, for the CPU reference's loop) partition
    the chunks; ``decode_lens`` are the decode chunks' ``seq_lens`` as host ints (the CPU
    path tiles by them without a device sync; empty means "read ``seq_lens``"). A GPU
    kernel reads the tensors alone.
    """

    slot_mapping: torch.Tensor  # [T] long: the cache slot each new token is written to
    query_start_loc: torch.Tensor  # [B + 1] long: cumulative new-token counts
    seq_lens: torch.Tensor  # [B] long: tokens in the cache after this step
    block_tables: torch.Tensor  # [B, max_blocks] long, padded with block 0 (never read)
    block_size: int
    decode_idx: torch.Tensor  # [Bd] long: chunks with one new token
    decode_blocks: int  # block-table width the decode chunks need
    prefill_spans: tuple[tuple[int, int, int, int], ...]  # (chunk, q_start, q_end, seq_len)
    decode_lens: tuple[int, ...] = ()  # host copy of seq_lens[decode_idx]
    native_cpu: bool = False  # decode through torch.ops.dsr_cpu (the runner loaded it)

    def host_decode_lens(self) -> list[int]:
        """The decode chunks' context lengths as host ints."""
        if self.decode_lens or not self.decode_idx.numel():
            return list(self.decode_lens)
        return [int(n) for n in self.seq_lens.index_select(0, self.decode_idx).tolist()]

    def decode_view(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Decode chunks' query rows ``[Bd]``, block tables ``[Bd, decode_blocks]`` and
        slot validity ``[Bd, decode_blocks * block_size]``."""
        idx = self.decode_idx
        rows = self.query_start_loc.index_select(0, idx)
        tables = self.block_tables.index_select(0, idx)[:, : self.decode_blocks]
        positions = torch.arange(self.decode_blocks * self.block_size, device=idx.device)
        valid = positions[None, :] < self.seq_lens.index_select(0, idx)[:, None]
        return rows, tables, valid

    def span_context(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Prefill span ``index``'s context slots ``[L]`` and causal mask ``[q_len, L]``."""
        chunk, q_start, q_end, ctx_len = self.prefill_spans[index]
        pos = torch.arange(ctx_len, device=self.block_tables.device)
        table = self.block_tables[chunk]
        slots = table[pos // self.block_size] * self.block_size + pos % self.block_size
        queries = torch.arange(ctx_len - (q_end - q_start), ctx_len, device=pos.device)
        return slots, pos[None, :] <= queries[:, None]


def build_metadata(
    chunks: list[tuple[int, int, list[int]]],
    block_size: int,
    device: torch.device | None = None,
    *,
    native_cpu: bool = False,
) -> PagedAttentionMetadata:
    """Metadata for ``(start_pos, n_new, block_table)`` chunks in batch order.

    ``native_cpu``: the decode rows of fp32 CPU caches read their blocks in place through
    the native kernels (``torch.ops.dsr_cpu.mla_decode`` / ``gqa_decode``, see
    :func:`native_decode_applies`; the runner sets it when it loaded
    the CPU kernels) instead of gathering them into tiles.

    Called by the model runner every step (and by kernel tests). Pure host-side list work
    plus a handful of small tensor constructions; nothing per token beyond the slot list.
    """
    slots: list[int] = []
    starts = [0]
    seq_lens: list[int] = []
    tables: list[list[int]] = []
    decode: list[int] = []
    decode_lens: list[int] = []
    spans: list[tuple[int, int, int, int]] = []
    decode_blocks = 0
    for b, (start, n, table) in enumerate(chunks):
        end = start + n
        width = (end + block_size - 1) // block_size
        used = table[:width]
        slots.extend(used[p // block_size] * block_size + p % block_size for p in range(start, end))
        q_start = starts[-1]
        starts.append(q_start + n)
        seq_lens.append(end)
        tables.append(used)
        if n == 1:
            decode.append(b)
            decode_lens.append(end)
            decode_blocks = max(decode_blocks, width)
        else:
            spans.append((b, q_start, q_start + n, end))
    max_blocks = max((len(t) for t in tables), default=0)
    padded = [t + [0] * (max_blocks - len(t)) for t in tables]

    def tensor(values: list[int] | list[list[int]]) -> torch.Tensor:
        return torch.tensor(values, dtype=torch.long, device=device)

    return PagedAttentionMetadata(
        slot_mapping=tensor(slots),
        query_start_loc=tensor(starts),
        seq_lens=tensor(seq_lens),
        block_tables=tensor(padded).view(len(chunks), max_blocks),
        block_size=block_size,
        decode_idx=tensor(decode),
        decode_blocks=decode_blocks,
        prefill_spans=tuple(spans),
        decode_lens=tuple(decode_lens),
        native_cpu=native_cpu,
    )


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
    if meta.decode_idx.numel():
        if backend_for(cache.device.type) == "triton":
            rows, tables, _ = meta.decode_view()
            q = (q_nope.index_select(0, rows), q_pe.index_select(0, rows))
            out[rows] = _triton_decode(q, cache, tables, meta, (scale, w_uk, w_uv))
        elif native_decode_applies(meta, cache, w_uk.shape[2]):
            _decode_native(out, (q_nope, q_pe), cache, meta, (scale, w_uk, w_uv))
        else:
            _decode_tiled(out, (q_nope, q_pe), cache, meta, (scale, w_uk, w_uv))
    for index, (_, q_start, q_end, _) in enumerate(meta.prefill_spans):
        ctx_slots, mask = meta.span_context(index)
        ctx = cache[ctx_slots]  # [L, R + P]
        q_len, ctx_len = q_end - q_start, ctx.shape[0]
        expand = prefill_form == "expanded" or (
            prefill_form == "auto" and expanded_is_cheaper(q_len, ctx_len, w_uk, w_uv)
        )
        kv = _expand(ctx, w_uk, w_uv) if expand else None
        for t0, t1 in _tiles(q_len, n_heads * ctx_len):
            a, b = q_start + t0, q_start + t1
            out[a:b] = _prefill(
                (q_nope[a:b], q_pe[a:b]), ctx, kv, mask[t0:t1], weights=(scale, w_uk, w_uv)
            )
    return out


def _triton_decode(
    q: tuple[torch.Tensor, torch.Tensor],
    cache: torch.Tensor,
    tables: torch.Tensor,
    meta: PagedAttentionMetadata,
    weights: tuple[float, torch.Tensor, torch.Tensor],
) -> torch.Tensor:
    """The decode rows through the Triton latent kernel (CUDA)."""
    from deepseek_runtime.kernels.mla_decode import paged_mla_decode  # noqa: PLC0415

    scale, w_uk, w_uv = weights
    seq_lens = meta.seq_lens.index_select(0, meta.decode_idx)
    return paged_mla_decode(
        q[0],
        q[1],
        cache,
        tables,
        seq_lens,
        block_size=meta.block_size,
        scale=scale,
        w_uk=w_uk,
        w_uv=w_uv,
        backend="triton",
    )


SCORE_BUDGET = 1 << 24  # elements of scores / gathered keys materialised at once


def _tiles(rows: int, per_row: int) -> list[tuple[int, int]]:
    step = max(1, SCORE_BUDGET // max(1, per_row))
    return [(i, min(i + step, rows)) for i in range(0, rows, step)]


_Weights = tuple[float, torch.Tensor, torch.Tensor]  # scale, w_uk, w_uv


NATIVE_WIDTH_MULTIPLE = 16  # the native decode kernels sum values 16 columns at a time


def native_decode_applies(meta: PagedAttentionMetadata, cache: torch.Tensor, width: int) -> bool:
    """Whether decode rows go to the native CPU kernels (``torch.ops.dsr_cpu``), which
    read each row's blocks in place: the runner loaded them, the cache is fp32 on CPU, and
    the summed value width (MLA's ``kv_lora_rank``, GQA's ``head_dim``) is a multiple of
    16. Shared by the MLA and GQA layers."""
    return (
        meta.native_cpu
        and cache.dtype == torch.float32
        and cache.device.type == "cpu"
        and width % NATIVE_WIDTH_MULTIPLE == 0
    )


DECODE_TILE_BUDGET = 1 << 19  # gathered latent elements per decode tile (2 MiB in fp32)


def decode_tiles(lengths: list[int], block_size: int, row_width: int) -> list[tuple[int, int, int]]:
    """``(first, end, blocks)`` tiles over decode rows sorted by ascending context length.

    Rows ``first .. end`` of the sorted order share one gather padded to ``blocks`` blocks
    (the tile's longest context), and a tile grows while its gathered keys stay within
    :data:`DECODE_TILE_BUDGET` elements (a tile always has at least one row). Sorting keeps
    the padding small; the budget keeps each tile's keys in cache between the gather and
    the two ``bmm`` that read them.
    """
    tiles: list[tuple[int, int, int]] = []
    first = 0
    for i, n in enumerate(lengths):
        blocks = -(-n // block_size)
        if i > first and (i + 1 - first) * blocks * block_size * row_width > DECODE_TILE_BUDGET:
            tiles.append((first, i, -(-lengths[i - 1] // block_size)))
            first = i
    if lengths:
        tiles.append((first, len(lengths), -(-lengths[-1] // block_size)))
    return tiles


def _decode_tiled(
    out: torch.Tensor,
    q: tuple[torch.Tensor, torch.Tensor],
    cache: torch.Tensor,
    meta: PagedAttentionMetadata,
    weights: _Weights,
) -> None:
    """Absorbed attention of every single-token query, written into its rows of ``out``.

    One ``bmm`` per head folds ``W_uk`` into all decode queries and one applies ``W_uv``
    to all their latents; in between, tiles of rows with similar context lengths gather
    their blocks (``index_select`` of whole blocks, the contiguous unit of the cache) and
    score / sum them with two ``bmm`` (the padding after each row's context is masked by
    an additive ``-inf`` bias, exactly zero weight after the softmax).
    """
    scale, w_uk, w_uv = weights
    lens = meta.host_decode_lens()
    order = sorted(range(len(lens)), key=lens.__getitem__)
    lens = [lens[i] for i in order]
    device, bs, width = cache.device, meta.block_size, cache.shape[-1]
    rank = w_uk.shape[2]
    chunks = meta.decode_idx.index_select(0, torch.tensor(order, device=device))
    rows = meta.query_start_loc.index_select(0, chunks)
    tables = meta.block_tables.index_select(0, chunks)
    q_full = _absorb_queries(q, rows, w_uk, scale).to(cache.dtype)
    blocks = cache.view(-1, bs * width)
    latent = cache.new_empty(len(lens), q_full.shape[1], rank)
    seq_lens = torch.tensor(lens, device=device)
    for first, end, n_blocks in decode_tiles(lens, bs, width):
        keys = blocks.index_select(0, tables[first:end, :n_blocks].reshape(-1))
        keys = keys.view(end - first, n_blocks * bs, width)
        pos = torch.arange(n_blocks * bs, device=device)
        bias = torch.zeros(end - first, 1, n_blocks * bs, dtype=cache.dtype, device=device)
        bias.masked_fill_((pos[None, :] >= seq_lens[first:end, None]).unsqueeze(1), float("-inf"))
        scores = torch.baddbmm(bias, q_full[first:end], keys.transpose(1, 2))
        probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(cache.dtype)
        torch.bmm(probs, keys[..., :rank], out=latent[first:end])
        del keys
    _write_values(out, rows, latent, w_uv)


def _absorb_queries(
    q: tuple[torch.Tensor, torch.Tensor], rows: torch.Tensor, w_uk: torch.Tensor, scale: float
) -> torch.Tensor:
    """``[len(rows), H, rank + rope]``: the rows' ``q_nope`` folded through ``W_uk`` (one
    ``bmm`` per head over all rows) beside their ``q_pe``, times the softmax scale."""
    q_nope, q_pe = q
    q_lat = torch.bmm(q_nope.index_select(0, rows).transpose(0, 1), w_uk).transpose(0, 1)
    return torch.cat((q_lat, q_pe.index_select(0, rows)), dim=-1) * scale


def _write_values(
    out: torch.Tensor, rows: torch.Tensor, latent: torch.Tensor, w_uv: torch.Tensor
) -> None:
    """``out[rows] = latent W_uv^T`` per head (the absorbed form's output projection)."""
    values = torch.bmm(latent.to(w_uv.dtype).transpose(0, 1), w_uv.transpose(1, 2))
    out.index_copy_(0, rows, values.transpose(0, 1).to(out.dtype))


def _decode_native(
    out: torch.Tensor,
    q: tuple[torch.Tensor, torch.Tensor],
    cache: torch.Tensor,
    meta: PagedAttentionMetadata,
    weights: _Weights,
) -> None:
    """:func:`_decode_tiled`'s math with the latent attention in one native call that
    reads each row's blocks where they are (no gather, no padding, no mask)."""
    scale, w_uk, w_uv = weights
    rows = meta.query_start_loc.index_select(0, meta.decode_idx)
    latent = torch.ops.dsr_cpu.mla_decode(
        _absorb_queries(q, rows, w_uk, scale).contiguous(),
        cache,
        meta.block_tables.index_select(0, meta.decode_idx),
        meta.seq_lens.index_select(0, meta.decode_idx),
        meta.block_size,
        w_uk.shape[2],
    )
    _write_values(out, rows, latent, w_uv)


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
