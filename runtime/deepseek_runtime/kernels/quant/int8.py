"""Int8 weight-only linears (W8A16): symmetric, one scale per output channel.

``W[i, :] ~= q[i, :] * scale[i]`` with ``q`` in ``[-127, 127]``. The int8 matrix stays as
it is in memory; on CPU ``apply`` runs ``torch._weight_int8pack_mm`` (int8 weights times
bf16 activations, scaled per output row inside the kernel) and on CUDA the Triton W8A16
GEMM. Neither builds the dense weight.

Called by the model's loader (quantize a bf16/fp32 checkpoint at load time) and by the
compressed-tensors decoder (an int8 checkpoint, already quantized).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from deepseek_runtime.kernels.dispatch import backend_for
from deepseek_runtime.kernels.quant.base import flatten_tokens, tensor_bytes

INT8_MAX = 127
CPU_K_MULTIPLE = 8  # torch._weight_int8pack_mm on CPU: other in_features crash or miscompute


@dataclass(frozen=True, slots=True)
class Int8Weight:
    """An ``[out, in]`` weight as int8 values and per-row scales in the compute dtype."""

    qweight: torch.Tensor  # [out, in] int8
    scales: torch.Tensor  # [out], dtype = the activations' compute dtype

    def __post_init__(self) -> None:
        if self.qweight.dtype != torch.int8 or self.qweight.dim() != 2:
            raise ValueError(
                f"qweight must be 2-D int8, got {self.qweight.dtype} {tuple(self.qweight.shape)}"
            )
        if tuple(self.scales.shape) != (self.qweight.shape[0],):
            raise ValueError(
                f"scales must have shape ({self.qweight.shape[0]},), got {tuple(self.scales.shape)}"
            )

    @property
    def out_features(self) -> int:
        return int(self.qweight.shape[0])

    @property
    def in_features(self) -> int:
        return int(self.qweight.shape[1])

    @property
    def nbytes(self) -> int:
        return tensor_bytes(self.qweight, self.scales)

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        rows, lead = flatten_tokens(x, self.in_features)
        compute = rows.to(self.scales.dtype)
        y: torch.Tensor
        if backend_for(x.device.type) == "triton":
            from deepseek_runtime.kernels.triton.gemm import w8a16_gemm  # noqa: PLC0415

            y = w8a16_gemm(compute, self.qweight, self.scales)
        elif self.in_features % CPU_K_MULTIPLE:
            # a shape the packed kernel does not take (tiny test models only): dequantize
            y = F.linear(compute, self.dequantize())
        else:
            y = torch._weight_int8pack_mm(compute.contiguous(), self.qweight, self.scales)
        return y.to(x.dtype).reshape(*lead, self.out_features)

    def dequantize(self) -> torch.Tensor:
        # exact in fp32 (8-bit integer times a <=24-bit mantissa), then one rounding
        dense = self.qweight.float() * self.scales.float().unsqueeze(1)
        return dense.to(self.scales.dtype)


def int8_scales(weight: torch.Tensor) -> torch.Tensor:
    """Per-row symmetric scales ``amax / 127`` in fp32 (all-zero rows get scale 1)."""
    amax = weight.float().abs().amax(dim=-1)
    return torch.where(amax > 0, amax / INT8_MAX, torch.ones_like(amax))


def round_int8(weight: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """``round(weight / scale)`` per row, clamped to ``[-127, 127]``, as int8."""
    q = torch.round(weight.float() / scales.float().unsqueeze(-1))
    return q.clamp(-INT8_MAX, INT8_MAX).to(torch.int8)


def quantize_int8(weight: torch.Tensor, dtype: torch.dtype = torch.bfloat16) -> Int8Weight:
    """Quantize a dense ``[out, in]`` fp32/bf16 weight to :class:`Int8Weight`.

    Args:
        weight: the dense weight, Hugging Face ``[out, in]`` layout.
        dtype: the compute dtype of the activations (the scales are stored in it, and
            ``apply`` computes in it); bf16 is what the packed CPU kernel is fast in.

    Raises:
        ValueError: when ``weight`` is not 2-D.
    """
    if weight.dim() != 2:
        raise ValueError(f"weight must be 2-D, got shape {tuple(weight.shape)}")
    # the scale is rounded to the compute dtype first, so q is chosen for the scale
    # the kernel really multiplies by
    scales = int8_scales(weight).to(dtype)
    return Int8Weight(round_int8(weight, scales).contiguous(), scales.contiguous())
