"""Paged GQA attention (the Qwen2 / Llama distills' layers) against a dense reference.

The reference repeats each KV head for its query heads (transformers' ``repeat_kv``) and
runs causal softmax attention per sequence in float64 over the slots its block table
names. The batches mix decode rows of very different context lengths (so the
length-sorted tiles differ in width), a prefill from position 0 and a chunked prefill
that starts mid-sequence, all through shuffled block tables. The tiling itself is
table-tested on host ints.
"""

from __future__ import annotations

import random

import pytest
import torch

from deepseek_runtime.kernels import gqa_decode_plan
from deepseek_runtime.kernels.gqa_decode_plan import (
    TILE_OVERHEAD,
    DecodePlanner,
    plan_decode,
    tile_bounds,
)
from deepseek_runtime.kernels.paged_attention import (
    SCORE_BUDGET,
    PagedAttentionMetadata,
    build_metadata,
)
from deepseek_runtime.kernels.paged_gqa_attention import paged_gqa_attention

pytestmark = pytest.mark.unit

BLOCK = 4
HEAD_DIM = 8


def _batch(
    chunks: list[tuple[int, int]], num_blocks: int, seed: int
) -> tuple[list[tuple[int, int, list[int]]], PagedAttentionMetadata]:
    """``(start_pos, n_new)`` chunks with shuffled, disjoint block tables."""
    order = list(range(num_blocks))
    random.Random(seed).shuffle(order)
    out, used = [], 0
    for start, n in chunks:
        need = -(-(start + n) // BLOCK)
        out.append((start, n, order[used : used + need]))
        used += need
    assert used <= num_blocks
    return out, build_metadata(out, BLOCK)


def _reference(
    q: torch.Tensor,
    cache: torch.Tensor,
    chunks: list[tuple[int, int, list[int]]],
    kv_heads: int,
) -> torch.Tensor:
    n_heads = q.shape[1]
    out = torch.zeros(q.shape, dtype=torch.float64)
    row = 0
    for start, n, table in chunks:
        slots = [table[p // BLOCK] * BLOCK + p % BLOCK for p in range(start + n)]
        ctx = cache[slots].double().view(len(slots), 2, kv_heads, HEAD_DIM)
        keys = ctx[:, 0].repeat_interleave(n_heads // kv_heads, dim=1)  # [L, H, d]
        values = ctx[:, 1].repeat_interleave(n_heads // kv_heads, dim=1)
        for i in range(n):
            visible = start + i + 1
            scores = torch.einsum("hd,lhd->hl", q[row].double(), keys[:visible])
            probs = torch.softmax(scores * HEAD_DIM**-0.5, dim=-1)
            out[row] = torch.einsum("hl,lhd->hd", probs, values[:visible])
            row += 1
    return out


# decode rows from 1 to 70 cached tokens, a fresh 9-token prefill, a 6-token chunk at 13
MIXED = [(69, 1), (0, 9), (2, 1), (40, 1), (13, 6), (0, 1), (33, 1), (7, 1), (68, 1)]


@pytest.mark.parametrize("split", [False, True])
@pytest.mark.parametrize(("n_heads", "kv_heads"), [(4, 4), (4, 2), (8, 2), (6, 1)])
def test_mixed_batch_matches_dense_reference(
    n_heads: int, kv_heads: int, split: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if split:  # at these tiny widths a tile is never worth it at the real overhead
        monkeypatch.setattr(gqa_decode_plan, "TILE_OVERHEAD", 64)
    chunks, meta = _batch(MIXED, 96, seed=n_heads * 10 + kv_heads)
    gen = torch.Generator().manual_seed(kv_heads)
    cache = torch.randn(96 * BLOCK, 2 * kv_heads * HEAD_DIM, generator=gen)
    q = torch.randn(int(meta.query_start_loc[-1]), n_heads, HEAD_DIM, generator=gen)
    got = paged_gqa_attention(q, cache, meta, num_kv_heads=kv_heads, scale=HEAD_DIM**-0.5)
    want = _reference(q, cache, chunks, kv_heads)
    assert (got.double() - want).abs().max().item() < 1e-5
    widths = [t.tables.shape[1] for t in plan_decode(meta, 2 * kv_heads * HEAD_DIM + n_heads)]
    assert widths == sorted(widths, reverse=True)
    assert (len(widths) > 2) == split, widths  # split: really tiles of different widths


def test_bfloat16_cache_stays_close() -> None:
    chunks, meta = _batch(MIXED, 96, seed=5)
    gen = torch.Generator().manual_seed(5)
    cache = torch.randn(96 * BLOCK, 2 * 2 * HEAD_DIM, generator=gen).to(torch.bfloat16)
    q = torch.randn(int(meta.query_start_loc[-1]), 4, HEAD_DIM, generator=gen)
    got = paged_gqa_attention(q, cache, meta, num_kv_heads=2, scale=HEAD_DIM**-0.5)
    assert got.dtype == torch.float32
    want = _reference(q.bfloat16().float(), cache, chunks, 2)
    assert (got.double() - want).abs().max().item() < 3e-2


def test_plan_covers_each_decode_row_once_with_room_for_its_context() -> None:
    _, meta = _batch(MIXED, 96, seed=1)
    tiles = plan_decode(meta, 2 * 2 * HEAD_DIM + 4)
    rows = torch.cat([t.rows for t in tiles]).tolist()
    decode_rows = meta.query_start_loc.index_select(0, meta.decode_idx).tolist()
    assert sorted(rows) == sorted(decode_rows)
    lens = dict(zip(meta.query_start_loc.tolist(), meta.seq_lens.tolist(), strict=False))
    for tile in tiles:
        for row, table, pad in zip(tile.rows, tile.tables, tile.padding, strict=True):
            n = lens[int(row)]
            assert table.numel() * BLOCK >= n
            assert (~pad[0]).sum().item() == n and not pad[0, :n].any()


def test_planner_reuses_the_plan_of_the_same_step_only() -> None:
    _, meta = _batch(MIXED, 96, seed=2)
    _, other = _batch(MIXED, 96, seed=3)
    planner = DecodePlanner()
    first = planner.tiles(meta, 36)
    assert planner.tiles(meta, 36) is first
    assert planner.tiles(other, 36) is not first
    assert planner.tiles(meta, 36) is not first  # recomputed, equal content
    assert [t.rows.tolist() for t in planner.tiles(meta, 36)] == [t.rows.tolist() for t in first]


def test_prefill_only_batch_has_no_decode_tiles() -> None:
    _, meta = _batch([(0, 5), (3, 4)], 16, seed=4)
    assert plan_decode(meta, 36) == ()


# (block counts sorted descending, elements per block) -> tiles
@pytest.mark.parametrize(
    ("blocks", "per_block", "want"),
    [
        ([], 64, []),
        ([5], 64, [(0, 1)]),
        ([9, 9, 9, 9], 1 << 10, [(0, 4)]),  # equal lengths never split
        # a cut saves (width - blocks_i) * rows_left * per_block; split when > overhead
        ([10, 2], TILE_OVERHEAD // 8, [(0, 2)]),
        ([10, 2], TILE_OVERHEAD // 8 + 1, [(0, 1), (1, 2)]),
        ([10, 9], TILE_OVERHEAD, [(0, 2)]),  # saves exactly the overhead: not worth it
        ([10, 9, 1, 1], TILE_OVERHEAD // 4, [(0, 2), (2, 4)]),
        ([3, 3, 3], SCORE_BUDGET // 6, [(0, 2), (2, 3)]),  # budget: two rows of 3 blocks
    ],
)
def test_tile_bounds(blocks: list[int], per_block: int, want: list[tuple[int, int]]) -> None:
    assert tile_bounds(blocks, per_block) == want


def test_mismatched_heads_are_refused() -> None:
    _, meta = _batch([(0, 3)], 4, seed=0)
    with pytest.raises(ValueError, match="do not fit"):
        paged_gqa_attention(
            torch.zeros(3, 6, HEAD_DIM),
            torch.zeros(16, 2 * 4 * HEAD_DIM),
            meta,
            num_kv_heads=4,
            scale=1.0,
        )
