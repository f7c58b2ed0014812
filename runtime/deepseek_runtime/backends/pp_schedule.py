"""One engine step over pipeline stages: micro-batches in flight, logits back to rank 0.

Called by every rank of a parallel group (``tp_group`` on rank 0, ``tp_worker`` on the
others) with the same chunks. The step's tokens are cut into ``M`` micro-batches of about
equal token counts (a long prefill chunk is cut too: its later pieces read the earlier
pieces' KV rows, which the same stage has written one micro-batch before). Each stage
runs the micro-batches in order and hands each one's hidden states on without waiting
(an asynchronous send), so with ``M`` micro-batches and ``P`` stages the stages overlap::

    stage 0 | mb0 | mb1 | mb2 |           |
    stage 1 |     | mb0 | mb1 | mb2 |     |      bubble = (P - 1) / (M + P - 1) of a stage
    logits  ──────────────────────────▶ rank 0 (samples)

The last stage's first TP rank sends the step's logits ``[chunks, vocab]`` to rank 0,
which owns the engine. :class:`StageTimes` accumulates how long this rank computed and
how long it waited for activations, so the bubble is measured, not assumed.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from ..model.runner import ChunkLike, ModelRunner, SeqChunk
from ..parallel.groups import ParallelContext
from ..parallel.pipeline import PendingSend, recv_tensor, send_tensor


@dataclass(slots=True)
class MicroBatch:
    """Pieces of the step's chunks, and which of them end a chunk.

    Attributes:
        pieces: the chunks (or parts of chunks) this micro-batch computes.
        ends: ``(piece index, chunk index)`` of every piece that ends its chunk: its
            logits are that chunk's.
    """

    pieces: list[SeqChunk] = field(default_factory=list)
    ends: list[tuple[int, int]] = field(default_factory=list)


def split_micro_batches(chunks: Sequence[ChunkLike], count: int) -> list[MicroBatch]:
    """Cut ``chunks`` into at most ``count`` micro-batches of about equal token counts,
    in order (pure). A chunk longer than the share is split across consecutive batches."""
    total = sum(len(c.token_ids) for c in chunks)
    if total == 0:
        return []
    per = -(-total // max(1, count))
    batches = [MicroBatch()]
    room = per
    for index, chunk in enumerate(chunks):
        ids, table = list(chunk.token_ids), list(chunk.block_table)
        offset = 0
        while offset < len(ids):
            if room == 0:
                batches.append(MicroBatch())
                room = per
            take = min(room, len(ids) - offset)
            batch = batches[-1]
            batch.pieces.append(
                SeqChunk(ids[offset : offset + take], chunk.start_pos + offset, table)
            )
            offset, room = offset + take, room - take
            if offset == len(ids):
                batch.ends.append((len(batch.pieces) - 1, index))
    return batches


@dataclass(slots=True)
class StageTimes:
    """Where this rank's step time went (seconds, summed over steps)."""

    steps: int = 0
    step_s: float = 0.0
    compute_s: float = 0.0
    """Running its layers on micro-batches."""
    wait_s: float = 0.0
    """Blocked on the previous stage's activations or on the last stage's logits."""

    @property
    def bubble(self) -> float:
        """Share of the step this stage was not computing (0 when nothing ran)."""
        return 0.0 if self.step_s <= 0 else max(0.0, 1.0 - self.compute_s / self.step_s)


def pipelined_step(
    runner: ModelRunner,
    chunks: Sequence[ChunkLike],
    ctx: ParallelContext,
    micro_batches: int,
    times: StageTimes | None = None,
) -> torch.Tensor | None:
    """Run one step on this rank's stage; rank 0 gets the logits ``[chunks, vocab]``, the
    other ranks of the last stage get them too, every other rank gets None."""
    if not chunks:
        return torch.empty(0, runner.vocab_size, dtype=torch.float32)
    times = times if times is not None else StageTimes()
    started = time.perf_counter()
    sends: list[PendingSend] = []
    rows: list[torch.Tensor | None] = [None] * len(chunks)
    group, prev, nxt = ctx.pp.group, ctx.prev_stage_rank, ctx.next_stage_rank
    for batch in split_micro_batches(chunks, micro_batches):
        hidden = None
        if prev is not None:
            wait = time.perf_counter()
            hidden = recv_tensor(prev, ctx.device, group)
            times.wait_s += time.perf_counter() - wait
        compute = time.perf_counter()
        out = runner.execute(batch.pieces, hidden)
        times.compute_s += time.perf_counter() - compute
        if nxt is not None:
            sends.append(send_tensor(out, nxt, group))
        else:
            for piece, chunk in batch.ends:
                rows[chunk] = out[piece]
    for pending in sends:
        pending.wait()
    logits = torch.stack([r for r in rows if r is not None]) if ctx.is_last_stage else None
    if ctx.pp.size > 1:
        if ctx.is_last_stage and ctx.tp.rank == 0:
            assert logits is not None
            send_tensor(logits, ctx.pp.ranks[0], group).wait()
        elif ctx.is_first_stage and ctx.tp.rank == 0:
            wait = time.perf_counter()
            logits = recv_tensor(ctx.pp.ranks[-1], ctx.device, group)
            times.wait_s += time.perf_counter() - wait
    times.steps += 1
    times.step_s += time.perf_counter() - started
    return logits
