"""Which model class serves a config, and how wide its paged cache rows are.

Called by :class:`~deepseek_runtime.model.runner.ModelRunner`. Two layer kinds page the
same block pool (same blocks, slots and block tables; only the row width differs):

=============  ==========================  ==========================================
model_type     cached per token per layer   row width
=============  ==========================  ==========================================
deepseek_v2/3  MLA latent ``[c_kv | k_pe]``  ``kv_lora_rank + qk_rope_head_dim``
qwen2, llama   GQA keys and values          ``2 * num_key_value_heads * head_dim``
=============  ==========================  ==========================================

Under tensor parallelism (a :class:`~deepseek_runtime.parallel.groups.ParallelContext`)
each rank caches the whole MLA latent (it is shared by all heads) but only its own GQA
KV heads.
"""

from __future__ import annotations

from deepseek_runtime.checkpoint.config import DeepseekConfig
from deepseek_runtime.checkpoint.dense_config import DenseConfig
from deepseek_runtime.checkpoint.model_config import ModelConfig
from deepseek_runtime.checkpoint.weights import WeightStore
from deepseek_runtime.model.decoder import DecoderStack
from deepseek_runtime.model.deepseek import DeepseekModel
from deepseek_runtime.model.dense import DenseModel, dense_kv_token_width
from deepseek_runtime.parallel.groups import ParallelContext

CausalLM = DecoderStack
"""What the runner drives: one flat-batch forward over a paged cache (both models are one)."""


def build_model(
    config: ModelConfig, store: WeightStore, ctx: ParallelContext | None = None
) -> CausalLM:
    """Load the model of ``config`` from ``store`` (this TP rank's shard with ``ctx``)."""
    if isinstance(config, DenseConfig):
        return DenseModel(config, store, ctx)
    return DeepseekModel(config, store, ctx)


def kv_token_width(config: ModelConfig, ctx: ParallelContext | None = None) -> int:
    """Values cached per token per layer on this rank (see the module docstring)."""
    if isinstance(config, DeepseekConfig):
        return config.latent_dim
    return dense_kv_token_width(config, ctx)
