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

from deepseek_runtime.checkpoint.dense_config import DenseConfig
from deepseek_runtime.checkpoint.weights import WeightStore
from deepseek_runtime.kernels.gqa_decode_plan import DecodePlanner
from deepseek_runtime.model.decoder import DecoderStack, PreNormBlock, lm_head_name, stage_range
from deepseek_runtime.model.gqa_attention import GQAAttention
from deepseek_runtime.model.mlp import DenseMLP
from deepseek_runtime.model.norm import RMSNorm
from deepseek_runtime.model.rope import RotaryEmbedding
from deepseek_runtime.parallel.config import kv_head_bounds
from deepseek_runtime.parallel.groups import ParallelContext
from deepseek_runtime.parallel.mlp import ParallelMLP


class DenseDecoderLayer(PreNormBlock):
    """Pre-norm residual block: GQA attention, then a SwiGLU MLP."""

    def __init__(
        self,
        config: DenseConfig,
        store: WeightStore,
        index: int,
        ctx: ParallelContext | None = None,
        planner: DecodePlanner | None = None,
    ) -> None:
        prefix = f"model.layers.{index}"
        hidden, eps = config.hidden_size, config.rms_norm_eps
        self.input_norm = RMSNorm.load(store, f"{prefix}.input_layernorm", hidden, eps)
        self.post_attn_norm = RMSNorm.load(store, f"{prefix}.post_attention_layernorm", hidden, eps)
        self.attn = GQAAttention(config, store, f"{prefix}.self_attn", ctx, planner)
        inter = config.intermediate_size
        self.mlp: DenseMLP | ParallelMLP = (
            DenseMLP(store, f"{prefix}.mlp", hidden, inter)
            if ctx is None
            else ParallelMLP(store, f"{prefix}.mlp", hidden, inter, ctx)
        )


class DenseModel(DecoderStack):
    """Embedding -> GQA + SwiGLU decoder layers -> norm -> lm_head (tied when configured)."""

    def __init__(
        self, config: DenseConfig, store: WeightStore, ctx: ParallelContext | None = None
    ) -> None:
        self.config = config
        self.ctx = ctx
        planner = DecodePlanner()  # a step's decode tiling, made once for all layers
        self.layers = [
            DenseDecoderLayer(config, store, i, ctx, planner)
            for i in stage_range(config.num_hidden_layers, ctx)
        ]
        self.norm = RMSNorm.load(store, "model.norm", config.hidden_size, config.rms_norm_eps)
        self.rope = RotaryEmbedding(config.rope(), config.attn_head_dim, interleaved=False)
        head = lm_head_name(store, config.tie_word_embeddings, prefer_stored=False)
        self.load_vocab(store, (config.vocab_size, config.hidden_size), head, ctx)

    @property
    def kv_token_width(self) -> int:
        """Cached values per token per layer: keys and values of this rank's KV heads."""
        return dense_kv_token_width(self.config, self.ctx)


def dense_kv_token_width(config: DenseConfig, ctx: ParallelContext | None = None) -> int:
    """``2 * kv_heads * head_dim``: one token's K and V in one layer, for the KV heads
    this rank holds (all of them without ``ctx``)."""
    heads = config.num_kv_heads
    if ctx is not None:
        start, stop = kv_head_bounds(heads, ctx.tp.size, ctx.tp.rank)
        heads = stop - start
    return 2 * heads * config.attn_head_dim
