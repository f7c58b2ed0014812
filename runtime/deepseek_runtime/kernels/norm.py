"""RMSNorm math as DeepSeek, Qwen2 and Llama compute it (reference on CPU).

Called by :class:`deepseek_runtime.model.norm.RMSNorm`: normalise in fp32, scale in the
model dtype. A fused kernel (e.g. with the residual add) replaces this behind the same
signature.
"""

from __future__ import annotations

import torch


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """``weight * x / sqrt(mean(x^2) + eps)`` over the last dimension."""
    dtype = x.dtype
    h = x.to(torch.float32)
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return weight * h.to(dtype)
