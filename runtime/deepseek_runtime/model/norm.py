"""RMSNorm layers (the math is :func:`deepseek_runtime.kernels.norm.rms_norm`).

Used by the decoder layer, MLA (``q_a_layernorm``, ``kv_a_layernorm``) and the final norm.
"""

from __future__ import annotations

import torch

from deepseek_runtime.checkpoint.weights import WeightStore
from deepseek_runtime.kernels.norm import rms_norm


class RMSNorm:
    """``weight * x / sqrt(mean(x^2) + eps)``; the weight is ``[dim]``."""

    def __init__(self, weight: torch.Tensor, eps: float) -> None:
        self.weight = weight
        self.eps = eps

    @classmethod
    def load(cls, store: WeightStore, name: str, dim: int, eps: float) -> RMSNorm:
        return cls(store.get(f"{name}.weight", (dim,)), eps)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return rms_norm(x, self.weight, self.eps)
