"""What goes in and out of each stage of an engine step, and the runner seam.

``LLMEngine.step()`` is three calls with plain dataclasses between them::

    Scheduler.schedule() ──SchedulerOutput──▶ ModelExecutor.execute(chunks)
                                                     │ logits [n_chunks, vocab]
    Scheduler.update_from_output(...) ◀── Sampler ◀──┘ (rows with ``sample=True``)

Everything here is lists and ints so it could cross a process boundary.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True, slots=True)
class ScheduledChunk:
    """Tokens of one sequence to compute this step.

    ``start_pos`` tokens are already in the KV cache; ``block_table`` covers
    ``start_pos + len(token_ids)`` tokens. ``sample`` is True when the chunk reaches the
    end of the sequence, so its last logits give the next token (otherwise it is a
    partial prefill chunk and its logits are dropped).
    """

    request_id: str
    token_ids: list[int]
    start_pos: int
    block_table: list[int]
    sample: bool


@dataclass(frozen=True, slots=True)
class SchedulerOutput:
    """What the scheduler decided for one step."""

    chunks: list[ScheduledChunk] = field(default_factory=list)

    @property
    def num_batched_tokens(self) -> int:
        return sum(len(c.token_ids) for c in self.chunks)

    @property
    def is_empty(self) -> bool:
        return not self.chunks


class ModelExecutor(Protocol):
    """What the engine needs from a model runner (the real one or a test fake)."""

    @property
    def block_size(self) -> int: ...

    @property
    def num_blocks(self) -> int: ...

    @property
    def vocab_size(self) -> int: ...

    def execute(self, chunks: Sequence[ScheduledChunk]) -> torch.Tensor:
        """fp32 logits ``[len(chunks), vocab]`` for the last token of each chunk."""
        ...
