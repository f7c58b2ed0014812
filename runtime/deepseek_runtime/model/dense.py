"""The Qwen2 / Llama decoder stack (the DeepSeek-R1 distills), composed from building blocks.

Called by :class:`~deepseek_runtime.model.runner.ModelRunner` through
:func:`~deepseek_runtime.model.registry.build_model`. Same flat-batch contract as
:class:`~deepseek_runtime.model.deepseek.DeepseekModel` (``forward`` over ``T`` new tokens
of many sequences, a paged cache, logits of selected rows), so the engine, scheduler and
KV manager serve both without knowing which one they drive. Each layer is pre-norm:
GQA attention, then a SwiGLU MLP.

``ctx`` (a :class:`~deepseek_runtime.parallel.groups.ParallelContext`) makes it
tensor-parallel (query heads and their KV heads, MLP slices, vocabulary-split embedding
and ``lm_head``) with a cache of this rank's KV heads only; ``None`` is the unsplit model.
"""

from __future__ import annotations

import torch

from deepseek_runtime.checkpoint.dense_config import DenseConfig
from deepseek_runtime.checkpoint.weights import CheckpointError, WeightStore
from deepseek_runtime.kernels.linear import linear
from deepseek_runtime.kernels.paged_attention import PagedAttentionMetadata
from deepseek_runtime.model.gqa_attention import GQAAttention
from deepseek_runtime.model.mlp import DenseMLP
from deepseek_runtime.model.norm import RMSNorm
from deepseek_runtime.model.rope import RotaryEmbedding
from deepseek_runtime.parallel.config import kv_head_bounds
from deepseek_runtime.parallel.groups import ParallelContext
from deepseek_runtime.parallel.mlp import ParallelMLP
from deepseek_runtime.parallel.vocab import ParallelLMHead, VocabParallelEmbedding


class DenseDecoderLayer:
    """Pre-norm residual block: GQA attention, then a SwiGLU MLP."""

    def __init__(
        self,
        config: DenseConfig,
        store: WeightStore,
        index: int,
        ctx: ParallelContext | None = None,
    ) -> None:
        prefix = f"model.layers.{index}"
        hidden, eps = config.hidden_size, config.rms_norm_eps
        self.input_norm = RMSNorm.load(store, f"{prefix}.input_layernorm", hidden, eps)
        self.post_attn_norm = RMSNorm.load(store, f"{prefix}.post_attention_layernorm", hidden, eps)
        self.attn = GQAAttention(config, store, f"{prefix}.self_attn", ctx)
        inter = config.intermediate_size
        self.mlp: DenseMLP | ParallelMLP = (
            DenseMLP(store, f"{prefix}.mlp", hidden, inter)
            if ctx is None
            else ParallelMLP(store, f"{prefix}.mlp", hidden, inter, ctx)
        )

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


class DenseModel:
    """Embedding -> decoder layers -> norm -> lm_head (tied to the embedding when configured)."""

    def __init__(
        self, config: DenseConfig, store: WeightStore, ctx: ParallelContext | None = None
    ) -> None:
        self.config = config
        self.ctx = ctx
        vocab, hidden = config.vocab_size, config.hidden_size
        self.layers = [
            DenseDecoderLayer(config, store, i, ctx) for i in range(config.num_hidden_layers)
        ]
        self.norm = RMSNorm.load(store, "model.norm", hidden, config.rms_norm_eps)
        self.rope = RotaryEmbedding(config.rope(), config.attn_head_dim, interleaved=False)
        self.parallel: tuple[VocabParallelEmbedding, ParallelLMHead] | None = None
        if ctx is not None:
            head = "model.embed_tokens.weight" if config.tie_word_embeddings else "lm_head.weight"
            if not store.has(head):
                raise CheckpointError(f"missing tensor {head!r} in {store.model_dir}")
            self.parallel = (
                VocabParallelEmbedding(store, "model.embed_tokens.weight", vocab, hidden, ctx),
                ParallelLMHead(store, head, vocab, hidden, ctx),
            )
            return
        self.embed = store.get("model.embed_tokens.weight", (vocab, hidden))
        if config.tie_word_embeddings:
            self.lm_head = self.embed
        elif store.has("lm_head.weight"):
            self.lm_head = store.get("lm_head.weight", (vocab, hidden))
        else:
            raise CheckpointError(f"missing tensor 'lm_head.weight' in {store.model_dir}")

    @property
    def kv_token_width(self) -> int:
        """Cached values per token per layer: keys and values of this rank's KV heads."""
        return dense_kv_token_width(self.config, self.ctx)

    @torch.inference_mode()
    def forward(
        self,
        token_ids: torch.Tensor,
        positions: torch.Tensor,
        cache: torch.Tensor,
        meta: PagedAttentionMetadata,
        logits_rows: torch.Tensor,
    ) -> torch.Tensor:
        """fp32 logits ``[len(logits_rows), vocab]``; ``cache`` is ``[layers, slots, width]``."""
        h = self.embed[token_ids] if self.parallel is None else self.parallel[0](token_ids)
        cos_sin = self.rope.cos_sin(positions)
        last = len(self.layers) - 1
        for index, layer in enumerate(self.layers):
            keep = logits_rows if index == last else None
            h = layer(h, self.rope, cos_sin, cache[index], meta, keep_rows=keep)
        if not self.layers:
            h = h.index_select(0, logits_rows)
        if self.parallel is not None:
            return self.parallel[1](self.norm(h))
        return linear(self.norm(h), self.lm_head).to(torch.float32)


def dense_kv_token_width(config: DenseConfig, ctx: ParallelContext | None = None) -> int:
    """``2 * kv_heads * head_dim``: one token's K and V in one layer, for the KV heads
    this rank holds (all of them without ``ctx``)."""
    heads = config.num_kv_heads
    if ctx is not None:
        start, stop = kv_head_bounds(heads, ctx.tp.size, ctx.tp.rank)
        heads = stop - start
    return 2 * heads * config.attn_head_dim
