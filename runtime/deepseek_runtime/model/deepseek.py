"""The DeepSeek V2/V3 decoder stack, composed from the layer building blocks.

Called by :class:`~deepseek_runtime.model.runner.ModelRunner`. Works on a flat batch of
``T`` tokens from many sequences (no padding); where each token reads and writes the
paged latent cache is described by :class:`PagedAttentionMetadata`. The multi-token
prediction layer (index ``num_hidden_layers``) is never loaded.

``ctx`` (a :class:`~deepseek_runtime.parallel.groups.ParallelContext`) makes every layer
tensor-parallel: heads, MLP and expert slices per rank, the embedding and ``lm_head``
split over the vocabulary (logits all-gathered, so every rank returns the full row).
``None`` is the single-process model, unchanged.
"""

from __future__ import annotations

import torch

from deepseek_runtime.checkpoint.config import DeepseekConfig
from deepseek_runtime.checkpoint.weights import CheckpointError, WeightStore
from deepseek_runtime.kernels.linear import linear
from deepseek_runtime.kernels.paged_attention import PagedAttentionMetadata
from deepseek_runtime.model.attention import MLAAttention
from deepseek_runtime.model.mlp import DenseMLP
from deepseek_runtime.model.moe import MoE, ParallelMoE
from deepseek_runtime.model.norm import RMSNorm
from deepseek_runtime.model.rope import RotaryEmbedding
from deepseek_runtime.parallel.groups import ParallelContext
from deepseek_runtime.parallel.mlp import ParallelMLP
from deepseek_runtime.parallel.vocab import ParallelLMHead, VocabParallelEmbedding


class DecoderLayer:
    """Pre-norm residual block: MLA, then a dense MLP or DeepSeekMoE."""

    def __init__(
        self,
        config: DeepseekConfig,
        store: WeightStore,
        index: int,
        ctx: ParallelContext | None = None,
    ) -> None:
        prefix = f"model.layers.{index}"
        eps = config.rms_norm_eps
        self.input_norm = RMSNorm.load(store, f"{prefix}.input_layernorm", config.hidden_size, eps)
        self.post_attn_norm = RMSNorm.load(
            store, f"{prefix}.post_attention_layernorm", config.hidden_size, eps
        )
        self.attn = MLAAttention(config, store, f"{prefix}.self_attn", ctx)
        self.mlp: DenseMLP | MoE | ParallelMLP | ParallelMoE
        if ctx is not None:
            self.mlp = (
                ParallelMoE(config, store, f"{prefix}.mlp", ctx)
                if config.is_moe_layer(index)
                else ParallelMLP(
                    store, f"{prefix}.mlp", config.hidden_size, config.intermediate_size, ctx
                )
            )
        elif config.is_moe_layer(index):
            self.mlp = MoE(config, store, f"{prefix}.mlp")
        else:
            self.mlp = DenseMLP(
                store, f"{prefix}.mlp", config.hidden_size, config.intermediate_size
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


class DeepseekModel:
    """Embedding -> decoder layers -> norm -> lm_head, over a paged latent cache."""

    def __init__(
        self, config: DeepseekConfig, store: WeightStore, ctx: ParallelContext | None = None
    ) -> None:
        self.config = config
        vocab, hidden = config.vocab_size, config.hidden_size
        self.layers = [DecoderLayer(config, store, i, ctx) for i in range(config.num_hidden_layers)]
        self.norm = RMSNorm.load(store, "model.norm", hidden, config.rms_norm_eps)
        self.rope = RotaryEmbedding(config.rope(), config.qk_rope_head_dim, config.rope_interleaved)
        self.parallel: tuple[VocabParallelEmbedding, ParallelLMHead] | None = None
        if ctx is not None:
            head = "lm_head.weight" if store.has("lm_head.weight") else None
            if head is None and not config.tie_word_embeddings:
                raise CheckpointError(f"missing tensor 'lm_head.weight' in {store.model_dir}")
            self.parallel = (
                VocabParallelEmbedding(store, "model.embed_tokens.weight", vocab, hidden, ctx),
                ParallelLMHead(store, head or "model.embed_tokens.weight", vocab, hidden, ctx),
            )
            return
        self.embed = store.get("model.embed_tokens.weight", (vocab, hidden))
        if store.has("lm_head.weight"):
            self.lm_head = store.get("lm_head.weight", (vocab, hidden))
        elif config.tie_word_embeddings:
            self.lm_head = self.embed
        else:
            raise CheckpointError(f"missing tensor 'lm_head.weight' in {store.model_dir}")

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
            cache: ``[num_layers, num_slots, latent_dim]`` latent cache (written in place).
            meta: where each token writes and reads the cache.
            logits_rows: ``[B]`` indices into ``T`` whose logits are wanted.
        """
        h = self.embed[token_ids] if self.parallel is None else self.parallel[0](token_ids)
        cos_sin = self.rope.cos_sin(positions)
        last = len(self.layers) - 1
        for index, layer in enumerate(self.layers):
            # The last layer still writes every token's latent, but only the rows whose
            # logits are wanted need its MLP.
            keep = logits_rows if index == last else None
            h = layer(h, self.rope, cos_sin, cache[index], meta, keep_rows=keep)
        if not self.layers:
            h = h.index_select(0, logits_rows)
        h = self.norm(h)
        if self.parallel is not None:
            return self.parallel[1](h)
        return linear(h, self.lm_head).to(torch.float32)
