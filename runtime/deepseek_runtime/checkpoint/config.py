"""The DeepSeek V2 / V3 ``config.json`` fields the runtime uses, validated on load.

Parsed through :mod:`deepseek_runtime.checkpoint.model_config` (which dispatches on
``model_type``); used by the model layers and ``make_tiny``. Unknown fields are
ignored (Hugging Face configs carry many); a missing or inconsistent field raises
:class:`ConfigError` naming it.

Two runtime switches choose between Hugging Face transformers (5.x) and DeepSeek's own
inference code where they differ; both default to transformers' behaviour:

* ``router_group_mask`` (V3 ``noaux_tc`` routing): the score given to experts of groups
  that were not selected before the final top-k. ``"-inf"`` (transformers 5.x, DeepSeek-V3
  ``inference/model.py``) or ``"zero"`` (DeepSeek's Hugging Face ``modeling_deepseek.py``
  and vLLM's ``grouped_topk``); they differ only when bias-corrected scores of experts in
  the kept groups go negative.
* ``yarn_softmax_mscale``: multiply the attention softmax scale by
  ``yarn_get_mscale(factor, mscale_all_dim) ** 2`` under YaRN. On: DeepSeek's
  ``modeling_deepseek.py`` (V2 and V3) and transformers 5.x (for V2 since
  huggingface/transformers#47435). Off: earlier transformers ``DeepseekV2Attention``,
  which left it out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, model_validator

SUPPORTED_ARCHITECTURES = {
    "deepseek_v3": "DeepseekV3ForCausalLM",
    "deepseek_v2": "DeepseekV2ForCausalLM",
}


class ConfigError(ValueError):
    """``config.json`` is missing a field, has a bad value, or names an unsupported model."""


@dataclass(frozen=True, slots=True)
class RopeSpec:
    """Resolved rotary settings: ``default`` (plain), ``yarn`` (DeepSeek) or ``llama3``."""

    rope_type: str
    theta: float
    factor: float = 1.0
    original_max_position_embeddings: int = 0
    beta_fast: float = 32.0
    beta_slow: float = 1.0
    mscale: float | None = None
    mscale_all_dim: float | None = None
    attention_factor: float | None = None
    truncate: bool = True
    low_freq_factor: float = 1.0  # llama3 only
    high_freq_factor: float = 4.0  # llama3 only


def yarn_get_mscale(scale: float, mscale: float = 1.0) -> float:
    """YaRN attention temperature ``0.1 * mscale * ln(scale) + 1`` (1 when scale <= 1)."""
    if scale <= 1:
        return 1.0
    return 0.1 * mscale * math.log(scale) + 1.0


class DecoderConfigFields(BaseModel):
    """The ``config.json`` fields every decoder the runtime serves shares (DeepSeek and the
    Qwen2 / Llama distills); each architecture's config adds its own and validates them."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    architectures: list[str] | None = None
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int | None = None
    hidden_act: str = "silu"
    max_position_embeddings: int
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    rope_scaling: dict[str, Any] | None = None
    rope_parameters: dict[str, Any] | None = None
    attention_bias: bool = False
    tie_word_embeddings: bool = False
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None
    quantization_config: dict[str, Any] | None = None

    @property
    def eos_token_ids(self) -> tuple[int, ...]:
        if self.eos_token_id is None:
            return ()
        if isinstance(self.eos_token_id, int):
            return (self.eos_token_id,)
        return tuple(self.eos_token_id)


class DeepseekConfig(DecoderConfigFields):
    """Validated DeepSeek V2/V3 architecture fields (names as in Hugging Face ``config.json``)."""

    model_type: Literal["deepseek_v3", "deepseek_v2"]
    moe_intermediate_size: int
    n_shared_experts: int | None = None
    n_routed_experts: int | None = None
    num_experts_per_tok: int | None = None
    routed_scaling_factor: float = 1.0
    topk_method: Literal["noaux_tc", "greedy", "group_limited_greedy"] | None = None
    scoring_func: Literal["sigmoid", "softmax"] | None = None
    n_group: int | None = None
    topk_group: int | None = None
    norm_topk_prob: bool = False
    moe_layer_freq: int = 1
    first_k_dense_replace: int = 0
    kv_lora_rank: int
    q_lora_rank: int | None = None
    qk_rope_head_dim: int
    qk_nope_head_dim: int
    v_head_dim: int
    rope_interleave: bool = True
    num_nextn_predict_layers: int = 0
    # Runtime switches (not Hugging Face fields); see the module docstring.
    router_group_mask: Literal["-inf", "zero"] = "-inf"
    yarn_softmax_mscale: bool = True

    @model_validator(mode="after")
    def _check(self) -> DeepseekConfig:
        want = SUPPORTED_ARCHITECTURES[self.model_type]
        if self.architectures is not None and want not in self.architectures:
            raise ValueError(
                f"architectures: {self.architectures} is not supported for model_type "
                f"{self.model_type!r} (expected {want!r})"
            )
        if self.hidden_act != "silu":
            raise ValueError(f"hidden_act: only 'silu' is supported, got {self.hidden_act!r}")
        if self.num_key_value_heads not in (None, self.num_attention_heads):
            raise ValueError(
                "num_key_value_heads: MLA needs num_key_value_heads == num_attention_heads"
            )
        if self.qk_rope_head_dim % 2:
            raise ValueError("qk_rope_head_dim: must be even")
        if not 0 <= self.first_k_dense_replace <= self.num_hidden_layers:
            raise ValueError("first_k_dense_replace: must be in [0, num_hidden_layers]")
        if self.moe_layer_freq < 1:
            raise ValueError("moe_layer_freq: must be >= 1")
        if self.has_moe:
            self._check_moe()
        if self.quantization_config is not None:
            method = self.quantization_config.get("quant_method")
            if method not in ("fp8", "compressed-tensors"):
                raise ValueError(
                    f"quantization_config.quant_method: unsupported {method!r} "
                    "(fp8 blocks or compressed-tensors)"
                )
        return self

    def _check_moe(self) -> None:
        experts = self.n_routed_experts or 0
        top_k = self.num_experts_per_tok
        if top_k is None or not 1 <= top_k <= experts:
            raise ValueError("num_experts_per_tok: must be in [1, n_routed_experts]")
        method = self.routing_method
        if method in ("noaux_tc", "group_limited_greedy"):
            groups, top_groups = self.n_group, self.topk_group
            if groups is None or groups < 1 or experts % groups:
                raise ValueError("n_group: must divide n_routed_experts")
            if top_groups is None or not 1 <= top_groups <= groups:
                raise ValueError("topk_group: must be in [1, n_group]")
            if top_groups * (experts // groups) < top_k:
                raise ValueError(
                    "topk_group: selected groups hold fewer experts than num_experts_per_tok"
                )
            if method == "noaux_tc" and experts // groups < 2:
                raise ValueError("n_group: noaux_tc routing needs at least 2 experts per group")

    @property
    def routing_method(self) -> str:
        """``noaux_tc`` (V3), ``greedy`` or ``group_limited_greedy`` (V2)."""
        if self.topk_method is not None:
            return self.topk_method
        return "noaux_tc" if self.model_type == "deepseek_v3" else "greedy"

    @property
    def scoring(self) -> str:
        """``sigmoid`` (V3) or ``softmax`` (V2) router scores."""
        if self.scoring_func is not None:
            return self.scoring_func
        return "sigmoid" if self.model_type == "deepseek_v3" else "softmax"

    @property
    def has_moe(self) -> bool:
        return bool(self.n_routed_experts)

    def is_moe_layer(self, index: int) -> bool:
        """Whether decoder layer ``index`` uses DeepSeekMoE (else a dense MLP)."""
        return (
            self.has_moe
            and index >= self.first_k_dense_replace
            and index % self.moe_layer_freq == 0
        )

    @property
    def qk_head_dim(self) -> int:
        return self.qk_nope_head_dim + self.qk_rope_head_dim

    @property
    def latent_dim(self) -> int:
        """Cached values per token per layer: ``kv_lora_rank + qk_rope_head_dim``."""
        return self.kv_lora_rank + self.qk_rope_head_dim

    @property
    def rope_interleaved(self) -> bool:
        """V2 always rotates interleaved pairs; V3 follows ``rope_interleave``."""
        return self.model_type == "deepseek_v2" or self.rope_interleave

    @property
    def fp8_block(self) -> tuple[int, int]:
        """The FP8 ``weight_block_size`` (``128 x 128`` unless the config says otherwise)."""
        size = (self.quantization_config or {}).get("weight_block_size", [128, 128])
        return int(size[0]), int(size[1])

    def rope(self) -> RopeSpec:
        """Resolve ``rope_parameters`` (transformers 5) or ``rope_theta`` + ``rope_scaling``."""
        params = dict(self.rope_parameters or self.rope_scaling or {})
        theta = float(params.get("rope_theta", self.rope_theta))
        rope_type = str(params.get("rope_type", params.get("type", "default")))
        if rope_type == "default":
            return RopeSpec("default", theta)
        if rope_type != "yarn":
            raise ConfigError(f"rope_scaling.type: unsupported {rope_type!r} (default or yarn)")
        original = int(params.get("original_max_position_embeddings", self.max_position_embeddings))
        factor = params.get("factor")
        return RopeSpec(
            "yarn",
            theta,
            factor=float(factor) if factor is not None else self.max_position_embeddings / original,
            original_max_position_embeddings=original,
            beta_fast=float(params.get("beta_fast") or 32),
            beta_slow=float(params.get("beta_slow") or 1),
            mscale=_opt_float(params.get("mscale")),
            mscale_all_dim=_opt_float(params.get("mscale_all_dim")),
            attention_factor=_opt_float(params.get("attention_factor")),
            truncate=bool(params.get("truncate", True)),
        )

    def softmax_scale(self) -> float:
        """``qk_head_dim ** -0.5``, times ``mscale(factor, mscale_all_dim) ** 2`` under YaRN."""
        scale = self.qk_head_dim**-0.5
        rope = self.rope()
        if rope.rope_type == "yarn" and self.yarn_softmax_mscale and rope.mscale_all_dim:
            m = yarn_get_mscale(rope.factor, rope.mscale_all_dim)
            scale *= m * m
        return float(scale)


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)
