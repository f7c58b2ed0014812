"""The Qwen2 / Llama ``config.json`` fields the runtime uses (the DeepSeek-R1 distills).

Called through :mod:`deepseek_runtime.checkpoint.model_config`, which picks this class or
:class:`~deepseek_runtime.checkpoint.config.DeepseekConfig` by ``model_type``. The R1
distills are ordinary dense decoders with grouped-query attention (GQA):

* ``qwen2`` (R1-Distill-Qwen-1.5B/7B/14B/32B): bias on the q/k/v projections (none on
  ``o_proj``), ``rope_theta`` from the config, optionally tied embeddings;
* ``llama`` (R1-Distill-Llama-8B/70B): no biases unless ``attention_bias`` / ``mlp_bias``,
  Llama-3.1 ``rope_scaling`` of type ``llama3``.

Unknown fields are ignored; anything the native engine cannot honour (sliding-window
attention, an activation other than SiLU, a quantization config other than
compressed-tensors) is a
:class:`~deepseek_runtime.checkpoint.config.ConfigError` naming the field, never a
silent fallback.
"""

from __future__ import annotations

from typing import Literal

from pydantic import model_validator

from deepseek_runtime.checkpoint.config import ConfigError, DecoderConfigFields, RopeSpec

DENSE_ARCHITECTURES = {"qwen2": "Qwen2ForCausalLM", "llama": "LlamaForCausalLM"}


class DenseConfig(DecoderConfigFields):
    """Validated Qwen2 / Llama fields (names as in Hugging Face ``config.json``)."""

    model_type: Literal["qwen2", "llama"]
    head_dim: int | None = None
    mlp_bias: bool = False
    use_sliding_window: bool = False

    @model_validator(mode="after")
    def _check(self) -> DenseConfig:
        want = DENSE_ARCHITECTURES[self.model_type]
        if self.architectures is not None and want not in self.architectures:
            raise ValueError(
                f"architectures: {self.architectures} is not supported for model_type "
                f"{self.model_type!r} (expected {want!r})"
            )
        if self.hidden_act != "silu":
            raise ValueError(f"hidden_act: only 'silu' is supported, got {self.hidden_act!r}")
        if self.num_attention_heads < 1 or self.num_kv_heads < 1:
            raise ValueError("num_attention_heads and num_key_value_heads must be >= 1")
        if self.num_attention_heads % self.num_kv_heads:
            raise ValueError(
                f"num_key_value_heads: {self.num_kv_heads} must divide "
                f"num_attention_heads ({self.num_attention_heads})"
            )
        if self.head_dim is None and self.hidden_size % self.num_attention_heads:
            raise ValueError("head_dim: hidden_size is not a multiple of num_attention_heads")
        if self.attn_head_dim % 2:
            raise ValueError("head_dim: must be even (rotary pairs)")
        if self.mlp_bias:
            raise ValueError("mlp_bias: MLP biases are not supported by the native engine")
        if self.use_sliding_window:
            raise ValueError(
                "use_sliding_window: sliding-window attention is not supported by the native "
                "engine (the R1 distills ship with it off); use engine vllm"
            )
        if self.quantization_config is not None:
            method = self.quantization_config.get("quant_method")
            if method != "compressed-tensors":
                raise ValueError(
                    f"quantization_config.quant_method: {method!r} is not supported for "
                    f"{self.model_type} checkpoints by the native engine (compressed-tensors)"
                )
        return self

    @property
    def num_kv_heads(self) -> int:
        """``num_key_value_heads``, defaulting (as transformers does) to the head count."""
        return self.num_key_value_heads or self.num_attention_heads

    @property
    def attn_head_dim(self) -> int:
        return self.head_dim or self.hidden_size // self.num_attention_heads

    @property
    def qkv_bias(self) -> bool:
        """Qwen2 always has q/k/v biases; Llama only with ``attention_bias``."""
        return self.model_type == "qwen2" or self.attention_bias

    @property
    def o_bias(self) -> bool:
        return self.model_type == "llama" and self.attention_bias

    @property
    def has_moe(self) -> bool:
        return False

    @property
    def fp8_block(self) -> tuple[int, int]:
        """FP8 block shape for ``--quantization fp8`` at load (no FP8 checkpoints here)."""
        return 128, 128

    def rope(self) -> RopeSpec:
        """Plain rope or Llama-3.1 ``llama3`` scaling (``rope_parameters`` or ``rope_scaling``)."""
        params = dict(self.rope_parameters or self.rope_scaling or {})
        theta = float(params.get("rope_theta", self.rope_theta))
        rope_type = str(params.get("rope_type", params.get("type", "default")))
        if rope_type == "default":
            return RopeSpec("default", theta)
        if rope_type != "llama3":
            raise ConfigError(
                f"rope_scaling.rope_type: unsupported {rope_type!r} for {self.model_type} "
                "(default or llama3)"
            )
        try:
            factor = float(params["factor"])
            low = float(params["low_freq_factor"])
            high = float(params["high_freq_factor"])
        except KeyError as exc:
            raise ConfigError(f"rope_scaling: llama3 needs {exc.args[0]!r}") from None
        if high <= low:
            raise ConfigError("rope_scaling: high_freq_factor must exceed low_freq_factor")
        original = int(params.get("original_max_position_embeddings", self.max_position_embeddings))
        return RopeSpec(
            "llama3",
            theta,
            factor=factor,
            original_max_position_embeddings=original,
            low_freq_factor=low,
            high_freq_factor=high,
        )
