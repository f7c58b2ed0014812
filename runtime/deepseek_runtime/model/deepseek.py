"""The DeepSeek V2/V3 decoder stack, composed from the layer building blocks.

Called by :class:`~deepseek_runtime.model.runner.ModelRunner`. Works on a flat batch of
``T`` tokens from many sequences (no padding); where each token reads and writes the
paged latent cache is described by :class:`PagedAttentionMetadata`. The multi-token
prediction layer (index ``num_hidden_layers``) is never loaded.

``ctx`` (a :class:`~deepseek_runtime.parallel.groups.ParallelContext`) makes every layer
tensor-parallel: heads, MLP and expert slices per rank, the embedding and ``lm_head``
split over the vocabulary (logits all-gathered, so every rank returns the full row);
with expert parallelism the routed experts are partitioned instead (``model.moe``); with
pipeline stages each holds its layer range (``model.decoder.stage_range``). ``None`` is
the single-process model, unchanged.
"""

from __future__ import annotations

from deepseek_runtime.checkpoint.config import DeepseekConfig
from deepseek_runtime.checkpoint.weights import WeightStore
from deepseek_runtime.model.attention import MLAAttention
from deepseek_runtime.model.decoder import DecoderStack, PreNormBlock, lm_head_name, stage_range
from deepseek_runtime.model.mlp import DenseMLP
from deepseek_runtime.model.moe import MoE, ParallelMoE
from deepseek_runtime.model.norm import RMSNorm
from deepseek_runtime.model.rope import RotaryEmbedding
from deepseek_runtime.parallel.groups import ParallelContext
from deepseek_runtime.parallel.mlp import ParallelMLP


class DecoderLayer(PreNormBlock):
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


class DeepseekModel(DecoderStack):
    """Embedding -> MLA + MoE decoder layers -> norm -> lm_head, over a paged latent cache."""

    def __init__(
        self, config: DeepseekConfig, store: WeightStore, ctx: ParallelContext | None = None
    ) -> None:
        self.config = config
        self.layers = [
            DecoderLayer(config, store, i, ctx) for i in stage_range(config.num_hidden_layers, ctx)
        ]
        self.norm = RMSNorm.load(store, "model.norm", config.hidden_size, config.rms_norm_eps)
        self.rope = RotaryEmbedding(config.rope(), config.qk_rope_head_dim, config.rope_interleaved)
        head = lm_head_name(store, config.tie_word_embeddings, prefer_stored=True)
        self.load_vocab(store, (config.vocab_size, config.hidden_size), head, ctx)
