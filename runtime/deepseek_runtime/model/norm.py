"""RMSNorm as DeepSeek (and transformers) compute it: normalise in fp32, scale in model dtype.

Used by the decoder layer, MLA (``q_a_layernorm``, ``kv_a_layernorm``) and the final norm.
"""

from __future__ import annotations

import torch

from deepseek_runtime.checkpoint.weights import WeightStore


class RMSNorm:
    """``weight * x / sqrt(mean(x^2) + eps)``; the weight is ``[dim]``."""

    def __init__(self, weight: torch.Tensor, eps: float) -> None:
        self.weight = weight
        self.eps = eps

    @classmethod
    def load(cls, store: WeightStore, name: str, dim: int, eps: float) -> RMSNorm:
        return cls(store.get(f"{name}.weight", (dim,)), eps)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        h = x.to(torch.float32)
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(dtype)
