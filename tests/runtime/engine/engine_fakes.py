"""A fake model runner for scheduler tests: it stores token ids in a paged "cache"
(one list slot per KV slot, addressed through the block table like the real runner) and
derives logits from the whole context read back through that cache, so a wrong block
table, a stale prefix-cache block or a lost token changes the generated tokens."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch

from deepseek_runtime.engine.step_io import ScheduledChunk


class FakeRunner:
    def __init__(self, num_blocks: int = 64, block_size: int = 4, vocab_size: int = 50) -> None:
        self.block_size = block_size
        self.num_blocks = num_blocks
        self.vocab_size = vocab_size
        self.slots: list[int | None] = [None] * (num_blocks * block_size)
        self.calls: list[list[ScheduledChunk]] = []
        self.fail_next = False

    def _slot(self, table: list[int], pos: int) -> int:
        return table[pos // self.block_size] * self.block_size + pos % self.block_size

    def execute(self, chunks: Sequence[ScheduledChunk]) -> torch.Tensor:
        self.calls.append(list(chunks))
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("boom")
        out = torch.zeros(len(chunks), self.vocab_size)
        for row, chunk in enumerate(chunks):
            for i, tok in enumerate(chunk.token_ids):
                self.slots[self._slot(chunk.block_table, chunk.start_pos + i)] = tok
            end = chunk.start_pos + len(chunk.token_ids)
            ctx = [self.slots[self._slot(chunk.block_table, p)] for p in range(end)]
            assert None not in ctx, "read an empty slot"
            digest = hashlib.sha256(repr(ctx).encode()).digest()
            gen = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little"))
            out[row] = torch.randn(self.vocab_size, generator=gen) * 3
        return out
