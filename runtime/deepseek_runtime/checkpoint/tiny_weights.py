"""Random weights for a DeepSeek config, under Hugging Face tensor names (for ``make_tiny``).

Linear weights are drawn with std ``1/sqrt(fan_in)`` and norms around 1, so hidden
states and logits stay of order one through the stack; the V3 router's
``e_score_correction_bias`` is non-zero so that it matters.
"""

from __future__ import annotations

import torch

from deepseek_runtime.checkpoint.config import DeepseekConfig


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


def random_weights(config: DeepseekConfig, seed: int, mtp: bool = False) -> dict[str, torch.Tensor]:
    """All tensors of ``config`` (fp32); with ``mtp``, an MTP layer at ``num_hidden_layers``."""
    g = _Gen(seed)
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
