"""Model architecture: the shape numbers the planner needs, read from a ``config.json``.

:func:`architecture_from_config` turns a Hugging Face ``config.json`` dict into a
:class:`ModelArchitecture` and counts parameters by component (attention, dense MLP,
routed experts, embeddings) so the memory model can place each on the right GPUs.
DeepSeek-V2/V3 (``model_type`` ``deepseek_v2``/``deepseek_v3``) use Multi-head Latent
Attention (MLA); everything else is treated as grouped-query attention (GQA).

Pure: called by :mod:`.catalog` for built-in models and by the planner for ``configRef``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

AttentionKind = Literal["mla", "gqa"]
MLA_MODEL_TYPES = frozenset({"deepseek_v2", "deepseek_v3"})


@dataclass(frozen=True, slots=True)
class ModelArchitecture:
    """Shape of a transformer checkpoint, as far as memory planning is concerned."""

    name: str
    attention: AttentionKind
    num_layers: int
    hidden_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int
    max_position_embeddings: int
    native_dtype: Literal["bf16", "fp8"]
    model_type: str = ""
    """``config.json`` ``model_type``: which engines can load it (see :mod:`.engines`)."""
    kv_lora_rank: int = 0
    qk_rope_head_dim: int = 0
    n_routed_experts: int = 0
    experts_per_token: int = 0
    total_params: int = 0
    active_params: int = 0
    expert_params: int = 0
    embedding_params: int = 0
    unquantized_params: int = 0
    """Weights outside embeddings that every format keeps in the model dtype: MoE
    routers and MLA's ``kv_b_proj`` (the runtime splits it into absorbed ``W_uk``/``W_uv``)."""
    mlp_width: int = 0
    """Widest MLP intermediate one token runs through: the dense ``intermediate_size``,
    or the routed top-k plus shared experts' ``moe_intermediate_size`` (sizes the
    step's activations, see ``memory.activation_bytes``)."""

    @property
    def is_moe(self) -> bool:
        """True for mixture-of-experts models."""
        return self.n_routed_experts > 0

    @property
    def dense_params(self) -> int:
        """Parameters outside routed experts and embeddings (attention, dense MLP, norms)."""
        return self.total_params - self.expert_params - self.embedding_params

    def kv_elements_per_token_layer(self, tensor: int) -> int:
        """KV cache elements one GPU stores per token per layer at tensor degree ``tensor``.

        MLA caches one compressed latent, ``kv_lora_rank + qk_rope_head_dim`` wide, which
        every tensor-parallel rank keeps whole. GQA caches K and V for each KV head; ranks
        split the heads, and replicate them once ``tensor`` exceeds the KV head count.
        """
        if self.attention == "mla":
            return self.kv_lora_rank + self.qk_rope_head_dim
        heads_per_gpu = max(1, -(-self.num_kv_heads // tensor))
        return 2 * heads_per_gpu * self.head_dim


def _req(config: dict[str, Any], key: str) -> int:
    value = config.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"config.json: {key!r} must be a positive integer, got {value!r}")
    return value


def _opt(config: dict[str, Any], key: str, default: int = 0) -> int:
    value = config.get(key)
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"config.json: {key!r} must be a non-negative integer, got {value!r}")
    return value


def _native_dtype(config: dict[str, Any]) -> Literal["bf16", "fp8"]:
    quant = config.get("quantization_config") or {}
    method = str(quant.get("quant_method", "")).lower() if isinstance(quant, dict) else ""
    return "fp8" if method == "fp8" else "bf16"


def architecture_from_config(
    config: dict[str, Any], name: str | None = None, stated_params: int | None = None
) -> ModelArchitecture:
    """Build a :class:`ModelArchitecture` from a Hugging Face ``config.json`` dict.

    Args:
        config: the parsed ``config.json``.
        name: display name; ``config["_name_or_path"]`` or ``model_type`` when omitted.
        stated_params: the published total parameter count, which then replaces the
            computed one (component shares are scaled to match).

    Raises:
        ValueError: when a required field is missing or not a positive integer.
    """
    model_type = str(config.get("model_type", ""))
    layers = _req(config, "num_hidden_layers")
    hidden = _req(config, "hidden_size")
    heads = _req(config, "num_attention_heads")
    vocab = _req(config, "vocab_size")
    kv_heads = _opt(config, "num_key_value_heads", heads) or heads
    head_dim = _opt(config, "head_dim", hidden // heads) or hidden // heads
    intermediate = _opt(config, "intermediate_size", 4 * hidden)
    tied = bool(config.get("tie_word_embeddings", False))
    embedding = vocab * hidden * (1 if tied else 2)
    mla = model_type in MLA_MODEL_TYPES
    kv_lora = rope = experts = topk = kv_b = 0
    if mla:
        kv_lora = _req(config, "kv_lora_rank")
        rope = _req(config, "qk_rope_head_dim")
        nope = _req(config, "qk_nope_head_dim")
        v_dim = _req(config, "v_head_dim")
        q_lora = _opt(config, "q_lora_rank")
        q = (
            hidden * q_lora + q_lora * heads * (nope + rope)
            if q_lora
            else hidden * heads * (nope + rope)
        )
        kv_b = kv_lora * heads * (nope + v_dim)
        kv = hidden * (kv_lora + rope) + kv_b
        attn = q + kv + heads * v_dim * hidden
        head_dim = nope + rope
    else:
        attn = (2 * hidden * heads * head_dim) + 2 * hidden * kv_heads * head_dim
    experts = _opt(config, "n_routed_experts")
    topk = _opt(config, "num_experts_per_tok")
    moe_inter = _opt(config, "moe_intermediate_size")
    shared = _opt(config, "n_shared_experts")
    first_dense = _opt(config, "first_k_dense_replace") if experts else layers
    freq = max(1, _opt(config, "moe_layer_freq", 1))
    moe_layers = sum(1 for i in range(first_dense, layers) if i % freq == 0) if experts else 0
    dense_layers = layers - moe_layers
    expert_params = moe_layers * experts * 3 * hidden * moe_inter
    shared_params = moe_layers * (shared * 3 * hidden * moe_inter + hidden * experts)
    dense_mlp = dense_layers * 3 * hidden * intermediate
    total = layers * attn + dense_mlp + shared_params + expert_params + embedding
    active = total - expert_params + (moe_layers * topk * 3 * hidden * moe_inter)
    if stated_params:
        scale = (stated_params - embedding) / (total - embedding)
        expert_params = int(expert_params * scale)
        active = embedding + int((active - embedding) * scale)
        total = stated_params
    return ModelArchitecture(
        name=name or str(config.get("_name_or_path") or model_type or "custom"),
        attention="mla" if mla else "gqa",
        num_layers=layers,
        hidden_size=hidden,
        num_heads=heads,
        num_kv_heads=heads if mla else kv_heads,
        head_dim=head_dim,
        vocab_size=vocab,
        max_position_embeddings=_opt(config, "max_position_embeddings", 4096),
        native_dtype=_native_dtype(config),
        model_type=model_type,
        kv_lora_rank=kv_lora,
        qk_rope_head_dim=rope,
        n_routed_experts=experts,
        experts_per_token=topk,
        total_params=total,
        active_params=active,
        expert_params=expert_params,
        embedding_params=embedding,
        unquantized_params=layers * kv_b + moe_layers * hidden * experts,
        mlp_width=max(
            intermediate if dense_layers else 0,
            (topk + shared) * moe_inter if moe_layers else 0,
        ),
    )
