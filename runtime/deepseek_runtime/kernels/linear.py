"""Dense linear and SiLU-gated MLP math, reference on CPU.

The seam for quantized / fused GEMMs: layers in :mod:`deepseek_runtime.model` call
:func:`linear` and :func:`silu_and_mul` rather than ``torch.nn.functional`` directly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``x @ weight.T + bias`` with ``weight`` shaped ``[out, in]`` (Hugging Face layout)."""
    return F.linear(x, weight, bias)


def silu_and_mul(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """SwiGLU activation: ``silu(gate) * up``."""
    return F.silu(gate) * up
