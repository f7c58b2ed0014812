"""Dense linear and SiLU-gated MLP math, reference on CPU.

The seam for quantized / fused GEMMs: layers in :mod:`deepseek_runtime.model` call
:func:`linear` and :func:`silu_and_mul` rather than ``torch.nn.functional`` directly. A
weight is a plain tensor, a :class:`~deepseek_runtime.kernels.cpu.packed.PackedWeight`
(fp32 in the native CPU kernels' panel layout), an
:class:`~deepseek_runtime.kernels.fp8.Fp8Weight` (kept in FP8; dequantized on use on
CPU), or any other
:class:`~deepseek_runtime.kernels.quant.base.QuantizedWeight` (int8 / int4), whose own
``apply`` picks the packed CPU matmul or the Triton kernel.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from deepseek_runtime.kernels.cpu.packed import PackedWeight
from deepseek_runtime.kernels.fp8 import Fp8Weight
from deepseek_runtime.kernels.quant.base import QuantizedWeight
from deepseek_runtime.kernels.quant.int4 import Int4Weight, int4_from_values
from deepseek_runtime.kernels.quant.int8 import Int8Weight

Weight = torch.Tensor | Fp8Weight | QuantizedWeight


def linear(x: torch.Tensor, weight: Weight, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``x @ weight.T + bias`` with ``weight`` shaped ``[out, in]`` (Hugging Face layout)."""
    if isinstance(weight, torch.Tensor):
        return F.linear(x, weight, bias)
    if isinstance(weight, PackedWeight):
        return weight.apply(x, bias)
    if isinstance(weight, Fp8Weight) and x.device.type == "cpu":
        return F.linear(x, weight.dequantize(), bias)
    y = weight.apply(x)
    return y if bias is None else y + bias


def _dense(w: Weight) -> torch.Tensor:
    return w if isinstance(w, torch.Tensor) else w.dequantize()


def concat_rows(a: Weight, b: Weight) -> Weight:
    """Stack two ``[out_i, in]`` weights into one (to fuse two GEMMs into one)."""
    if isinstance(a, PackedWeight) and isinstance(b, PackedWeight):
        return PackedWeight.pack(torch.cat((a.dequantize(), b.dequantize())))
    if isinstance(a, Fp8Weight) and isinstance(b, Fp8Weight):
        fused = a.concat_rows(b)
        if fused is not None:
            return fused
    if isinstance(a, Int8Weight) and isinstance(b, Int8Weight) and a.scales.dtype == b.scales.dtype:
        return Int8Weight(torch.cat((a.qweight, b.qweight)), torch.cat((a.scales, b.scales)))
    if (
        isinstance(a, Int4Weight)
        and isinstance(b, Int4Weight)
        and (a.group_size, a.layout, a.dtype) == (b.group_size, b.layout, b.dtype)
    ):
        values = torch.cat((a.int_values(), b.int_values()))
        scales = torch.cat((a.group_scales(), b.group_scales()))
        return int4_from_values(values, scales, a.group_size, a.layout)
    return torch.cat((_dense(a), _dense(b)), dim=0)


def silu_and_mul(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """SwiGLU activation: ``silu(gate) * up``."""
    return F.silu(gate) * up
