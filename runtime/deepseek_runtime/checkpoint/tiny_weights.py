"""Random weights for a model config, under Hugging Face tensor names (for ``make_tiny``).

Linear weights are drawn with std ``1/sqrt(fan_in)`` and norms around 1, so hidden
states and logits stay of order one through the stack; the V3 router's
``e_score_correction_bias`` is non-zero so that it matters.
"""

from __future__ import annotations

import torch

from deepseek_runtime.checkpoint.config import DeepseekConfig
from deepseek_runtime.checkpoint.dense_config import DenseConfig
from deepseek_runtime.checkpoint.model_config import ModelConfig


class _Gen:
    def __init__(self, seed: int) -> None:
        self.gen = torch.Generator().manual_seed(seed)
        self.out: dict[str, torch.Tensor] = {}

    def linear(self, name: str, rows: int, cols: int) -> None:
        self.out[f"{name}.weight"] = torch.randn(rows, cols, generator=self.gen) / cols**0.5

    def norm(self, name: str, dim: int) -> None:
        self.out[f"{name}.weight"] = 1.0 + 0.1 * torch.randn(dim, generator=self.gen)

    def bias(self, name: str, dim: int) -> None:
        self.out[f"{name}.bias"] = 0.02 * torch.randn(dim, generator=self.gen)


def _attention(g: _Gen, c: DeepseekConfig, p: str) -> None:
    heads, hidden = c.num_attention_heads, c.hidden_size
    if c.q_lora_rank is None:
        g.linear(f"{p}.q_proj", heads * c.qk_head_dim, hidden)
    else:
        g.linear(f"{p}.q_a_proj", c.q_lora_rank, hidden)
        g.norm(f"{p}.q_a_layernorm", c.q_lora_rank)
        g.linear(f"{p}.q_b_proj", heads * c.qk_head_dim, c.q_lora_rank)
        if c.attention_bias:
            g.bias(f"{p}.q_a_proj", c.q_lora_rank)
    g.linear(f"{p}.kv_a_proj_with_mqa", c.latent_dim, hidden)
    g.norm(f"{p}.kv_a_layernorm", c.kv_lora_rank)
    g.linear(f"{p}.kv_b_proj", heads * (c.qk_nope_head_dim + c.v_head_dim), c.kv_lora_rank)
    g.linear(f"{p}.o_proj", hidden, heads * c.v_head_dim)
    if c.attention_bias:
        g.bias(f"{p}.kv_a_proj_with_mqa", c.latent_dim)
        g.bias(f"{p}.o_proj", hidden)


def _mlp(g: _Gen, p: str, hidden: int, inter: int) -> None:
    g.linear(f"{p}.gate_proj", inter, hidden)
    g.linear(f"{p}.up_proj", inter, hidden)
    g.linear(f"{p}.down_proj", hidden, inter)


def _layer(g: _Gen, c: DeepseekConfig, index: int, moe: bool) -> None:
    p = f"model.layers.{index}"
    g.norm(f"{p}.input_layernorm", c.hidden_size)
    g.norm(f"{p}.post_attention_layernorm", c.hidden_size)
    _attention(g, c, f"{p}.self_attn")
    if not moe:
        _mlp(g, f"{p}.mlp", c.hidden_size, c.intermediate_size)
        return
    experts = int(c.n_routed_experts or 0)
    g.linear(f"{p}.mlp.gate", experts, c.hidden_size)
    if c.routing_method == "noaux_tc":
        g.out[f"{p}.mlp.gate.e_score_correction_bias"] = 0.1 * torch.randn(experts, generator=g.gen)
    for e in range(experts):
        _mlp(g, f"{p}.mlp.experts.{e}", c.hidden_size, c.moe_intermediate_size)
    if c.n_shared_experts:
        _mlp(
            g,
            f"{p}.mlp.shared_experts",
            c.hidden_size,
            c.moe_intermediate_size * c.n_shared_experts,
        )


def _dense_layer(g: _Gen, c: DenseConfig, index: int) -> None:
    p = f"model.layers.{index}"
    g.norm(f"{p}.input_layernorm", c.hidden_size)
    g.norm(f"{p}.post_attention_layernorm", c.hidden_size)
    q_out, kv_out = c.num_attention_heads * c.attn_head_dim, c.num_kv_heads * c.attn_head_dim
    for name, rows in (("q_proj", q_out), ("k_proj", kv_out), ("v_proj", kv_out)):
        g.linear(f"{p}.self_attn.{name}", rows, c.hidden_size)
        if c.qkv_bias:
            # Qwen2's q/k biases are large in trained checkpoints; keep them visible here
            g.out[f"{p}.self_attn.{name}.bias"] = 0.5 * torch.randn(rows, generator=g.gen)
    g.linear(f"{p}.self_attn.o_proj", c.hidden_size, q_out)
    if c.o_bias:
        g.bias(f"{p}.self_attn.o_proj", c.hidden_size)
    _mlp(g, f"{p}.mlp", c.hidden_size, c.intermediate_size)


def _dense_weights(config: DenseConfig, g: _Gen) -> dict[str, torch.Tensor]:
    g.out["model.embed_tokens.weight"] = torch.randn(
        config.vocab_size, config.hidden_size, generator=g.gen
    )
    for index in range(config.num_hidden_layers):
        _dense_layer(g, config, index)
    g.norm("model.norm", config.hidden_size)
    if not config.tie_word_embeddings:
        g.linear("lm_head", config.vocab_size, config.hidden_size)
    return g.out


def random_weights(config: ModelConfig, seed: int, mtp: bool = False) -> dict[str, torch.Tensor]:
    """All tensors of ``config`` (fp32); with ``mtp`` (DeepSeek only), an MTP layer at
    index ``num_hidden_layers``."""
    g = _Gen(seed)
    if isinstance(config, DenseConfig):
        if mtp:
            raise ValueError("mtp: only DeepSeek checkpoints have a multi-token-prediction layer")
        return _dense_weights(config, g)
    g.out["model.embed_tokens.weight"] = torch.randn(
        config.vocab_size, config.hidden_size, generator=g.gen
    )
    for index in range(config.num_hidden_layers):
        _layer(g, config, index, config.is_moe_layer(index))
    g.norm("model.norm", config.hidden_size)
    if not config.tie_word_embeddings:
        g.linear("lm_head", config.vocab_size, config.hidden_size)
    if mtp:
        index = config.num_hidden_layers
        p = f"model.layers.{index}"
        g.norm(f"{p}.enorm", config.hidden_size)
        g.norm(f"{p}.hnorm", config.hidden_size)
        g.linear(f"{p}.eh_proj", config.hidden_size, 2 * config.hidden_size)
        g.norm(f"{p}.shared_head.norm", config.hidden_size)
        _layer(g, config, index, config.has_moe)
    return g.out
