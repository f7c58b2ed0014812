"""What the DeepSeek and the Qwen2 / Llama decoders share: the pre-norm block and the stack.

Called by :mod:`deepseek_runtime.model.deepseek` and :mod:`deepseek_runtime.model.dense`,
which build the layers (MLA + MoE, or GQA + SwiGLU) and pick the ``lm_head`` tensor; this
module runs them. The flat-batch contract: ``forward`` takes the ``T`` new tokens of many
sequences, writes their cache rows, and returns fp32 logits of the selected rows only
(the last layer's MLP runs on those rows alone).
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


class DecoderStack:
    """Embedding -> decoder layers -> norm -> lm_head, over a paged cache."""

    layers: Sequence[PreNormBlock]
    norm: RMSNorm
    rope: RotaryEmbedding

    def load_vocab(
        self,
        store: WeightStore,
        shape: tuple[int, int],
        head: str | None,
        ctx: ParallelContext | None,
    ) -> None:
        """Embedding and ``lm_head`` (``head`` None: tied), split by vocabulary with ``ctx``."""
        vocab, hidden = shape
        self.parallel: tuple[VocabParallelEmbedding, ParallelLMHead] | None = None
        if ctx is not None:
            self.parallel = (
                VocabParallelEmbedding(store, EMBED, vocab, hidden, ctx),
                ParallelLMHead(store, head or EMBED, vocab, hidden, ctx),
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
    ) -> torch.Tensor:
        """fp32 logits ``[len(logits_rows), vocab]`` for the selected token rows.

        Args:
            token_ids: ``[T]`` token ids of all new tokens in the step.
            positions: ``[T]`` their positions in their sequences.
            cache: ``[num_layers, num_slots, row width]`` paged cache (written in place).
            meta: where each token writes and reads the cache.
            logits_rows: ``[B]`` indices into ``T`` whose logits are wanted.
        """
        h = self.embed[token_ids] if self.parallel is None else self.parallel[0](token_ids)
        cos_sin = self.rope.cos_sin(positions)
        last = len(self.layers) - 1
        for index, layer in enumerate(self.layers):
            # The last layer still writes every token's cache row, but only the rows whose
            # logits are wanted need its MLP.
            keep = logits_rows if index == last else None
            h = layer(h, self.rope, cos_sin, cache[index], meta, keep_rows=keep)
        if not self.layers:
            h = h.index_select(0, logits_rows)
        h = self.norm(h)
        if self.parallel is not None:
            return self.parallel[1](h)
        return linear(h, self.lm_head).to(torch.float32)
