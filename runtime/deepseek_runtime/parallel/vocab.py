"""Vocabulary-parallel embedding and ``lm_head``: each TP rank holds ``vocab / TP`` rows.

Called by the model files (not wired yet). With rank ``r`` holding token ids
``[v0, v1)``::

    embedding:  e_r = E_r[id - v0] if v0 <= id < v1 else 0   -> all-reduce = E[id]
    lm_head:    logits_r = h W_r^T  ([T, vocab / TP])        -> all-gather = h W^T

The vocabulary must divide by TP (DeepSeek-V3's 129280, V2's 102400 and the distills'
vocabularies divide by 8); anything else is a ValueError.
"""

from __future__ import annotations

import torch

from deepseek_runtime.kernels.linear import Weight, linear
from deepseek_runtime.parallel.config import shard_bounds
from deepseek_runtime.parallel.groups import ParallelContext
from deepseek_runtime.parallel.shard_loading import (
    ShardSource,
    load_linear_slice,
    load_slice,
    weight_nbytes,
)


class VocabParallelEmbedding:
    """Token embedding with the table split by vocabulary rows over the TP group."""

    def __init__(
        self,
        source: ShardSource,
        name: str,
        vocab_size: int,
        hidden: int,
        ctx: ParallelContext,
    ) -> None:
        self.tp = ctx.tp
        self.start, self.stop = shard_bounds(vocab_size, ctx.tp.size, ctx.tp.rank, "vocab_size")
        self.weight = load_slice(source, name, (vocab_size, hidden), 0, (self.start, self.stop))

    @property
    def nbytes(self) -> int:
        return weight_nbytes(self.weight)

    def __call__(self, token_ids: torch.Tensor) -> torch.Tensor:
        """``[T]`` ids -> ``[T, hidden]`` embeddings (the same on every TP rank)."""
        local = (token_ids >= self.start) & (token_ids < self.stop)
        rows = torch.where(local, token_ids - self.start, torch.zeros_like(token_ids))
        out = self.weight[rows] * local.unsqueeze(-1).to(self.weight.dtype)
        return self.tp.all_reduce(out)


class ParallelLMHead:
    """Output projection split by vocabulary rows; logits are gathered on every TP rank.

    Args:
        name: the weight (``lm_head.weight``, or ``model.embed_tokens.weight`` when tied).
        gather: all-gather the logits (off: return this rank's ``vocab / TP`` columns).
    """

    def __init__(
        self,
        source: ShardSource,
        name: str,
        vocab_size: int,
        hidden: int,
        ctx: ParallelContext,
        *,
        gather: bool = True,
    ) -> None:
        self.tp = ctx.tp
        rows = shard_bounds(vocab_size, ctx.tp.size, ctx.tp.rank, "vocab_size")
        self.weight: Weight = load_linear_slice(source, name, (vocab_size, hidden), 0, rows)
        self.gather = gather

    @property
    def nbytes(self) -> int:
        return weight_nbytes(self.weight)

    def __call__(self, h: torch.Tensor) -> torch.Tensor:
        """``[T, hidden]`` -> fp32 logits ``[T, vocab]`` (or this rank's columns)."""
        logits = linear(h, self.weight).to(torch.float32)
        return self.tp.all_gather(logits, dim=-1) if self.gather else logits
