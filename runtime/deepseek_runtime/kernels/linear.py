"""Dense linear and SiLU-gated MLP math, reference on CPU.

The seam for quantized / fused GEMMs: layers in :mod:`deepseek_runtime.model` call
:func:`linear` and :func:`silu_and_mul` rather than ``torch.nn.functional`` directly. A
weight is either a plain tensor or an :class:`~deepseek_runtime.kernels.fp8.Fp8Weight`
(kept in FP8; dequantized on use here, consumed directly by a future GPU kernel).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from deepseek_runtime.kernels.fp8 import Fp8Weight

Weight = torch.Tensor | Fp8Weight


def linear(x: torch.Tensor, weight: Weight, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``x @ weight.T + bias`` with ``weight`` shaped ``[out, in]`` (Hugging Face layout)."""
    if isinstance(weight, Fp8Weight):
        return F.linear(x, weight.dequantize(), bias)
    return F.linear(x, weight, bias)


def concat_rows(a: Weight, b: Weight) -> Weight:
    """Stack two ``[out_i, in]`` weights into one (to fuse two GEMMs into one)."""
    if isinstance(a, Fp8Weight) and isinstance(b, Fp8Weight):
        fused = a.concat_rows(b)
        if fused is not None:
            return fused
    dense_a = a.dequantize() if isinstance(a, Fp8Weight) else a
    dense_b = b.dequantize() if isinstance(b, Fp8Weight) else b
    return torch.cat((dense_a, dense_b), dim=0)


def silu_and_mul(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """SwiGLU activation: ``silu(gate) * up``."""
    return F.silu(gate) * up
