"""How a step's decode queries are tiled for paged GQA attention on CPU.

Called by :func:`deepseek_runtime.kernels.paged_gqa_attention.paged_gqa_attention`
(through a :class:`DecodePlanner` the model's layers share, so the plan is made once per
step, not once per layer). Decode attention gathers every block a query reads; one padded
gather for the whole batch copies each short sequence up to the longest one, which in a
mixed batch (8-token and 400-token contexts side by side) is most of the bytes moved. So
the rows are sorted by context length, longest first, and cut into tiles, each padded to
its own first (longest) row::

    blocks per row (sorted):  48 47 47 45 | 31 30 30 29 28 | 12 11 9 9 8 8 | 3 2 2
    tile width:               48          | 31             | 12            | 3

A cut before row ``i`` saves at least ``(width - blocks_i) * rows_left`` padded blocks
(every later row is no longer than row ``i``), so it is made when that saving outweighs
the fixed cost of one more tile (:data:`TILE_OVERHEAD`, in gathered elements). A tile
also stays under :data:`SCORE_BUDGET` elements of gathered context and scores.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from deepseek_runtime.kernels.paged_attention import SCORE_BUDGET, PagedAttentionMetadata

# what one more tile costs (a dozen small torch calls per layer), in gathered elements:
# about the time a CPU core needs to copy 1 MiB
TILE_OVERHEAD = 1 << 18


@dataclass(frozen=True, slots=True)
class DecodeTile:
    """Decode queries attended together, padded to the same number of blocks.

    Attributes:
        rows: ``[b]`` their query rows in the step's token batch.
        tables: ``[b, width]`` their block tables cut to the tile width (the tail of a
            shorter row's table repeats block 0 or its own blocks; masked out).
        padding: ``[b, 1, width * block_size]`` True where a slot holds no token of the row.
    """

    rows: torch.Tensor
    tables: torch.Tensor
    padding: torch.Tensor


def tile_bounds(blocks: list[int], per_block: int) -> list[tuple[int, int]]:
    """``(start, end)`` tiles over rows whose block counts are sorted descending.

    Pure (host ints only), so it is table-tested directly. ``per_block`` is the gathered
    plus score elements one block of one row costs.
    """
    bounds: list[tuple[int, int]] = []
    start = 0
    for i in range(1, len(blocks)):
        width = blocks[start]
        saving = (width - blocks[i]) * (len(blocks) - i) * per_block
        over_budget = (i + 1 - start) * width * per_block > SCORE_BUDGET
        if saving > TILE_OVERHEAD or over_budget:
            bounds.append((start, i))
            start = i
    if blocks:
        bounds.append((start, len(blocks)))
    return bounds


def plan_decode(meta: PagedAttentionMetadata, per_slot: int) -> tuple[DecodeTile, ...]:
    """The decode chunks of ``meta`` as length-sorted tiles (empty without decode chunks).

    ``per_slot``: elements one context slot of one row costs (cache row width plus one
    score per query head).
    """
    chunks = meta.decode_idx
    if not chunks.numel():
        return ()
    bs = meta.block_size
    lens = meta.seq_lens.index_select(0, chunks)
    order = torch.argsort(lens, descending=True, stable=True)
    chunks, lens = chunks.index_select(0, order), lens.index_select(0, order)
    blocks = ((lens + bs - 1) // bs).tolist()
    positions = torch.arange(blocks[0] * bs, device=lens.device)
    tiles = []
    for start, end in tile_bounds(blocks, bs * per_slot):
        ids, width = chunks[start:end], blocks[start]
        tiles.append(
            DecodeTile(
                rows=meta.query_start_loc.index_select(0, ids),
                tables=meta.block_tables.index_select(0, ids)[:, :width],
                padding=(positions[: width * bs][None, :] >= lens[start:end, None]).unsqueeze(1),
            )
        )
    return tuple(tiles)


class DecodePlanner:
    """Remembers the plan of the last metadata it saw: the layers of one model run the same
    step one after another, so all but the first reuse it.

    One per model (the model's GQA layers share it); a model runs one step at a time.
    """

    def __init__(self) -> None:
        self._last: tuple[PagedAttentionMetadata, int, tuple[DecodeTile, ...]] | None = None

    def tiles(self, meta: PagedAttentionMetadata, per_slot: int) -> tuple[DecodeTile, ...]:
        """:func:`plan_decode` of ``meta``, computed once per metadata object."""
        last = self._last
        if last is not None and last[0] is meta and last[1] == per_slot:
            return last[2]
        tiles = plan_decode(meta, per_slot)
        self._last = (meta, per_slot, tiles)
        return tiles
