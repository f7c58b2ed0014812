"""Rotary position embedding: plain rope, YaRN (DeepSeek) and Llama-3.1's ``llama3``.

Called by :class:`~deepseek_runtime.model.attention.MLAAttention` (MLA's decoupled
``q_pe`` / ``k_pe``) and :class:`~deepseek_runtime.model.gqa_attention.GQAAttention` (whole
Qwen2 / Llama heads, non-interleaved). YaRN frequencies follow transformers'
``_compute_yarn_parameters`` (which matches DeepSeek's reference), including the cos/sin
``attention_factor``; ``llama3`` follows Meta's Llama 3.1 recipe: wavelengths longer than
``original_max / low_freq_factor`` are slowed by ``factor``, shorter than
``original_max / high_freq_factor`` kept, and the band between blended linearly.

DeepSeek checkpoints rotate *interleaved* pairs
``(x0, x1), (x2, x3), ...``; non-interleaved rope rotates ``(x_i, x_{i+d/2})``. Both give the
rotated pairs back as ``[first elements | second elements]``; since q and k use the same
layout, their dot products are unchanged by that ordering.
"""

from __future__ import annotations

import math

import torch

from deepseek_runtime.checkpoint.config import RopeSpec, yarn_get_mscale
from deepseek_runtime.kernels.rotary import apply_rotary


def _yarn_inv_freq(spec: RopeSpec, dim: int) -> torch.Tensor:
    base = spec.theta

    def correction_dim(rotations: float) -> float:
        return (
            dim * math.log(spec.original_max_position_embeddings / (rotations * 2 * math.pi))
        ) / (2 * math.log(base))

    low, high = correction_dim(spec.beta_fast), correction_dim(spec.beta_slow)
    if spec.truncate:
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001
    ramp = ((torch.arange(dim // 2, dtype=torch.float32) - low) / (high - low)).clamp(0, 1)
    pos_freqs = base ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim)
    extrapolation = 1.0 / pos_freqs
    interpolation = 1.0 / (spec.factor * pos_freqs)
    extrapolation_factor = 1 - ramp
    return interpolation * (1 - extrapolation_factor) + extrapolation * extrapolation_factor


def _llama3_inv_freq(spec: RopeSpec, dim: int) -> torch.Tensor:
    inv_freq = 1.0 / (spec.theta ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))
    original = float(spec.original_max_position_embeddings)
    low_wavelen = original / spec.low_freq_factor
    high_wavelen = original / spec.high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    slowed = torch.where(wavelen > low_wavelen, inv_freq / spec.factor, inv_freq)
    smooth = (original / wavelen - spec.low_freq_factor) / (
        spec.high_freq_factor - spec.low_freq_factor
    )
    blended = (1 - smooth) * slowed / spec.factor + smooth * slowed
    in_band = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
    return torch.where(in_band, blended, slowed)


class RotaryEmbedding:
    """cos/sin tables for ``dim`` rotary dims; :meth:`apply` rotates ``[..., dim]`` tensors."""

    def __init__(self, spec: RopeSpec, dim: int, interleaved: bool) -> None:
        self.interleaved = interleaved
        if spec.rope_type == "yarn":
            self.inv_freq = _yarn_inv_freq(spec, dim)
            if spec.attention_factor is not None:
                self.attention_scaling = spec.attention_factor
            elif spec.mscale and spec.mscale_all_dim:
                self.attention_scaling = yarn_get_mscale(
                    spec.factor, spec.mscale
                ) / yarn_get_mscale(spec.factor, spec.mscale_all_dim)
            else:
                self.attention_scaling = yarn_get_mscale(spec.factor)
        elif spec.rope_type == "llama3":
            self.inv_freq = _llama3_inv_freq(spec, dim)
            self.attention_scaling = 1.0
        else:
            self.inv_freq = 1.0 / (
                spec.theta ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim)
            )
            self.attention_scaling = 1.0

    def cos_sin(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[T, dim/2]`` cos and sin (fp32, scaled by the YaRN attention factor)."""
        inv_freq = self.inv_freq.to(positions.device)
        freqs = positions.to(torch.float32)[:, None] * inv_freq[None, :]
        return freqs.cos() * self.attention_scaling, freqs.sin() * self.attention_scaling

    def apply(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """Rotate ``x`` ``[T, ..., dim]`` with per-token ``cos``/``sin`` ``[T, dim/2]``."""
        return apply_rotary(x, cos, sin, interleaved=self.interleaved)
