"""RMSNorm layers (the math is :func:`deepseek_runtime.kernels.norm.rms_norm`).

Used by the decoder layer, MLA (``q_a_layernorm``, ``kv_a_layernorm``) and the final norm.
"""

from __future__ import annotations

import torch

from deepseek_runtime.checkpoint.weights import WeightStore
from deepseek_runtime.kernels.norm import rms_norm


class RMSNorm:
    """``weight * x / sqrt(mean(x^2) + eps)``; the weight is ``[dim]``."""

    def __init__(self, weight: torch.Tensor, eps: float, *, native: bool = False) -> None:
        self.weight = weight
        self.eps = eps
        self.native = native and weight.dtype == torch.float32 and weight.device.type == "cpu"
        """Run as ``torch.ops.dsr_cpu.rms_norm`` (the loader packed for the CPU kernels)."""

    @classmethod
    def load(cls, store: WeightStore, name: str, dim: int, eps: float) -> RMSNorm:
        return cls(store.get(f"{name}.weight", (dim,)), eps, native=store.pack_cpu_kernels)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.native and x.dtype == torch.float32:
            rows = x.reshape(-1, x.shape[-1])
            if rows.stride(-1) != 1:
                rows = rows.contiguous()
            out: torch.Tensor = torch.ops.dsr_cpu.rms_norm(rows, self.weight, self.eps)
            return out.view(x.shape)
        return rms_norm(x, self.weight, self.eps)
