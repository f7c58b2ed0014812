"""Which model class serves a config, and how wide its paged cache rows are.

Called by :class:`~deepseek_runtime.model.runner.ModelRunner`. Two layer kinds page the
same block pool (same blocks, slots and block tables; only the row width differs):

=============  ==========================  ==========================================
model_type     cached per token per layer   row width
=============  ==========================  ==========================================
deepseek_v2/3  MLA latent ``[c_kv | k_pe]``  ``kv_lora_rank + qk_rope_head_dim``
qwen2, llama   GQA keys and values          ``2 * num_key_value_heads * head_dim``
=============  ==========================  ==========================================
"""

from __future__ import annotations

from typing import Protocol

import torch

from deepseek_runtime.checkpoint.config import DeepseekConfig
from deepseek_runtime.checkpoint.dense_config import DenseConfig
from deepseek_runtime.checkpoint.model_config import ModelConfig
from deepseek_runtime.checkpoint.weights import WeightStore
from deepseek_runtime.kernels.paged_attention import PagedAttentionMetadata
from deepseek_runtime.model.deepseek import DeepseekModel
from deepseek_runtime.model.dense import DenseModel, dense_kv_token_width


class CausalLM(Protocol):
    """What the runner drives: one flat-batch forward over a paged cache."""

    def forward(
        self,
        token_ids: torch.Tensor,
        positions: torch.Tensor,
        cache: torch.Tensor,
        meta: PagedAttentionMetadata,
        logits_rows: torch.Tensor,
    ) -> torch.Tensor: ...


def build_model(config: ModelConfig, store: WeightStore) -> CausalLM:
    """Load the model of ``config`` from ``store``."""
    if isinstance(config, DenseConfig):
        return DenseModel(config, store)
    return DeepseekModel(config, store)


def kv_token_width(config: ModelConfig) -> int:
    """Values cached per token per layer (see the table in the module docstring)."""
    if isinstance(config, DeepseekConfig):
        return config.latent_dim
    return dense_kv_token_width(config)
