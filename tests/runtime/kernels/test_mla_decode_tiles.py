"""CPU MLA decode: length-sorted tiles over block tables give the textbook attention."""

from __future__ import annotations

import pytest
import torch

from deepseek_runtime.kernels import paged_attention
from deepseek_runtime.kernels.paged_attention import (
    build_metadata,
    decode_tiles,
    paged_mla_attention,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("lengths", "budget", "tiles"),
    [
        ([], 1 << 19, []),
        ([3, 4, 9], 1 << 19, [(0, 3, 3)]),  # one tile, padded to the longest (9 -> 3 blocks)
        ([3, 4, 9], 1, [(0, 1, 1), (1, 2, 1), (2, 3, 3)]),  # a tile always has one row
        ([4, 4, 8, 8], 2 * 4 * 2, [(0, 2, 1), (2, 3, 2), (3, 4, 2)]),
        ([4, 4, 8, 8], 4 * 4 * 2 * 2, [(0, 4, 2)]),
    ],
)
def test_decode_tiles_respect_the_budget(
    lengths: list[int],
    budget: int,
    tiles: list[tuple[int, int, int]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(paged_attention, "DECODE_TILE_BUDGET", budget)
    assert decode_tiles(lengths, block_size=4, row_width=2) == tiles


def _reference(
    q: tuple[torch.Tensor, torch.Tensor],
    ctx: torch.Tensor,
    w_uk: torch.Tensor,
    w_uv: torch.Tensor,
    scale: float,
) -> torch.Tensor:
    """Expanded per-head attention of one query token over its whole context."""
    rank = w_uk.shape[2]
    k = torch.einsum("lr,hnr->hln", ctx[:, :rank], w_uk)
    v = torch.einsum("lr,hvr->hlv", ctx[:, :rank], w_uv)
    s = torch.einsum("hn,hln->hl", q[0], k) + torch.einsum("hp,lp->hl", q[1], ctx[:, rank:])
    return torch.einsum("hl,hlv->hv", torch.softmax(s * scale, dim=-1), v)


@pytest.mark.parametrize("budget", [1, 64, 1 << 19])
def test_tiled_decode_matches_reference_in_any_batch(
    budget: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(paged_attention, "DECODE_TILE_BUDGET", budget)
    g = torch.Generator().manual_seed(3)
    heads, nope, rope, rank, v_dim, bs = 4, 8, 4, 16, 6, 4
    w_uk = torch.randn(heads, nope, rank, generator=g)
    w_uv = torch.randn(heads, v_dim, rank, generator=g)
    cache = torch.randn(30 * bs, rank + rope, generator=g)
    perm = torch.randperm(30, generator=g).tolist()
    # decode rows of different lengths, in blocks scattered over the cache, mixed with a
    # prefill chunk (which the decode path must leave alone)
    lens = [9, 1, 17, 4, 13, 5]
    tables, k = [], 0
    for n in lens:
        tables.append(perm[k : k + -(-n // bs)])
        k += len(tables[-1])
    chunks = [(n - 1, 1, t) for n, t in zip(lens, tables, strict=True)]
    chunks.insert(2, (0, 3, perm[k : k + 1]))
    n_tokens = len(lens) + 3
    q_nope = torch.randn(n_tokens, heads, nope, generator=g)
    q_pe = torch.randn(n_tokens, heads, rope, generator=g)
    meta = build_metadata(chunks, bs)
    assert meta.decode_lens == tuple(lens)
    out = paged_mla_attention(q_nope, q_pe, cache, meta, scale=0.3, w_uk=w_uk, w_uv=w_uv)
    rows = meta.query_start_loc.index_select(0, meta.decode_idx).tolist()
    for row, n, table in zip(rows, lens, tables, strict=True):
        pos = torch.arange(n)
        ctx = cache[torch.tensor(table)[pos // bs] * bs + pos % bs]
        want = _reference((q_nope[row], q_pe[row]), ctx, w_uk, w_uv, 0.3)
        assert torch.allclose(out[row], want, atol=1e-4)
        # the same row alone in its batch
        alone = build_metadata([(n - 1, 1, table)], bs)
        single = paged_mla_attention(
            q_nope[row : row + 1],
            q_pe[row : row + 1],
            cache,
            alone,
            scale=0.3,
            w_uk=w_uk,
            w_uv=w_uv,
        )
        assert torch.allclose(single[0], out[row], atol=1e-5)


def test_decode_lens_fall_back_to_the_tensor() -> None:
    meta = build_metadata([(4, 1, [2, 0]), (0, 2, [1])], block_size=4)
    bare = paged_attention.PagedAttentionMetadata(
        slot_mapping=meta.slot_mapping,
        query_start_loc=meta.query_start_loc,
        seq_lens=meta.seq_lens,
        block_tables=meta.block_tables,
        block_size=4,
        decode_idx=meta.decode_idx,
        decode_blocks=meta.decode_blocks,
        prefill_spans=meta.prefill_spans,
    )
    assert bare.host_decode_lens() == meta.host_decode_lens() == [5]
