"""What the DeepSeek and the Qwen2 / Llama decoders share: the pre-norm block and the stack.

Called by :mod:`deepseek_runtime.model.deepseek` and :mod:`deepseek_runtime.model.dense`,
which build the layers (MLA + MoE, or GQA + SwiGLU) and pick the ``lm_head`` tensor; this
module runs them. The flat-batch contract: ``forward`` takes the ``T`` new tokens of many
sequences, writes their cache rows, and returns fp32 logits of the selected rows only
(the last layer's MLP runs on those rows alone).

Under pipeline parallelism (a context whose ``pp`` group has several stages) a stack holds
only its stage's layer range (:func:`stage_range`): the first stage embeds the tokens, the
others take the previous stage's hidden states (``forward(..., hidden=h)``); every stage
but the last returns its hidden states for all ``T`` rows, the last the logits::

    stage 0: embed -> layers [0, k)  -> h ──send──▶ stage 1: h -> layers [k, n) -> logits
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from deepseek_runtime.checkpoint.weights import CheckpointError, WeightStore
from deepseek_runtime.kernels.linear import linear
from deepseek_runtime.kernels.paged_attention import PagedAttentionMetadata
from deepseek_runtime.model.norm import RMSNorm
from deepseek_runtime.model.rope import RotaryEmbedding
from deepseek_runtime.parallel.groups import ParallelContext
from deepseek_runtime.parallel.pipeline import partition_layers
from deepseek_runtime.parallel.vocab import ParallelLMHead, VocabParallelEmbedding

EMBED = "model.embed_tokens.weight"


class PreNormBlock:
    """Pre-norm residual block: attention, then the MLP; subclasses load the four parts."""

    input_norm: RMSNorm
    post_attn_norm: RMSNorm
    attn: Callable[..., torch.Tensor]  # (x, rope, cos_sin, cache, meta) -> [T, hidden]
    mlp: Callable[[torch.Tensor], torch.Tensor]

    def __call__(
        self,
        h: torch.Tensor,
        rope: RotaryEmbedding,
        cos_sin: tuple[torch.Tensor, torch.Tensor],
        cache: torch.Tensor,
        meta: PagedAttentionMetadata,
        *,
        keep_rows: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """One block; with ``keep_rows`` only those rows go through the MLP and come back."""
        h = h + self.attn(self.input_norm(h), rope, cos_sin, cache, meta)
        if keep_rows is not None:
            h = h.index_select(0, keep_rows)
        return h + self.mlp(self.post_attn_norm(h))


def lm_head_name(store: WeightStore, tied: bool, *, prefer_stored: bool) -> str | None:
    """The ``lm_head`` tensor to load, or None to reuse the embedding (tied).

    DeepSeek checkpoints prefer a stored ``lm_head.weight``; transformers' Qwen2 / Llama
    tie whenever ``tie_word_embeddings`` says so, whatever the file holds.
    """
    stored = store.has("lm_head.weight")
    if stored and (prefer_stored or not tied):
        return "lm_head.weight"
    if tied:
        return None
    raise CheckpointError(f"missing tensor 'lm_head.weight' in {store.model_dir}")


def stage_range(num_layers: int, ctx: ParallelContext | None) -> range:
    """The decoder layers this process holds: all of them, or its pipeline stage's."""
    if ctx is None or ctx.pp.size == 1:
        return range(num_layers)
    return partition_layers(num_layers, ctx.pp.size)[ctx.pp.rank]


def cached_layers(num_layers: int, ctx: ParallelContext | None) -> int:
    """Layers a KV block is sized by: the busiest stage's, so every stage of a pipeline
    gets the same block count from the same memory budget."""
    if ctx is None or ctx.pp.size == 1:
        return num_layers
    return max(len(r) for r in partition_layers(num_layers, ctx.pp.size))


class DecoderStack:
    """Embedding -> decoder layers -> norm -> lm_head, over a paged cache."""

    layers: Sequence[PreNormBlock]
    norm: RMSNorm
    rope: RotaryEmbedding
    first_stage: bool = True
    """Embeds token ids (else ``forward`` takes the previous stage's hidden states)."""
    last_stage: bool = True
    """Ends in the norm and ``lm_head`` (else ``forward`` returns hidden states)."""

    def load_vocab(
        self,
        store: WeightStore,
        shape: tuple[int, int],
        head: str | None,
        ctx: ParallelContext | None,
    ) -> None:
        """Embedding and ``lm_head`` (``head`` None: tied), split by vocabulary with ``ctx``.

        A pipeline stage loads only its end's: the embedding on the first stage, the
        ``lm_head`` on the last (which reads the embedding's rows when tied).
        """
        vocab, hidden = shape
        self.parallel: tuple[VocabParallelEmbedding | None, ParallelLMHead | None] | None = None
        if ctx is not None:
            self.first_stage, self.last_stage = ctx.is_first_stage, ctx.is_last_stage
            self.parallel = (
                VocabParallelEmbedding(store, EMBED, vocab, hidden, ctx)
                if self.first_stage
                else None,
                ParallelLMHead(store, head or EMBED, vocab, hidden, ctx)
                if self.last_stage
                else None,
            )
            return
        self.embed = store.get(EMBED, (vocab, hidden))
        self.lm_head = self.embed if head is None else store.get(head, (vocab, hidden))

    @torch.inference_mode()
    def forward(
        self,
        token_ids: torch.Tensor,
        positions: torch.Tensor,
        cache: torch.Tensor,
        meta: PagedAttentionMetadata,
        logits_rows: torch.Tensor,
        *,
        hidden: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """fp32 logits ``[len(logits_rows), vocab]`` for the selected token rows (or, on a
        pipeline stage before the last, the hidden states ``[T, hidden]`` of every row).

        Args:
            token_ids: ``[T]`` token ids of all new tokens in the step.
            positions: ``[T]`` their positions in their sequences.
            cache: ``[num_layers, num_slots, row width]`` paged cache (written in place).
            meta: where each token writes and reads the cache.
            logits_rows: ``[B]`` indices into ``T`` whose logits are wanted.
            hidden: ``[T, hidden]`` from the previous pipeline stage (stages after the
                first only).
        """
        h = self._embed(token_ids) if hidden is None else hidden
        cos_sin = self.rope.cos_sin(positions)
        last = len(self.layers) - 1 if self.last_stage else -1
        for index, layer in enumerate(self.layers):
            # The last layer still writes every token's cache row, but only the rows whose
            # logits are wanted need its MLP.
            keep = logits_rows if index == last else None
            h = layer(h, self.rope, cos_sin, cache[index], meta, keep_rows=keep)
        if not self.last_stage:
            return h
        if not self.layers:
            h = h.index_select(0, logits_rows)
        h = self.norm(h)
        if self.parallel is not None:
            assert self.parallel[1] is not None  # the last stage loads the lm_head
            return self.parallel[1](h)
        return linear(h, self.lm_head).to(torch.float32)

    def _embed(self, token_ids: torch.Tensor) -> torch.Tensor:
        if self.parallel is None:
            return self.embed[token_ids]
        if self.parallel[0] is None:
            raise ValueError("a pipeline stage after the first needs the previous stage's hidden")
        return self.parallel[0](token_ids)
