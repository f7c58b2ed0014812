"""Int4 weight-only linears (W4A16): symmetric, one scale per group of input columns.

``W[i, j] ~= q[i, j] * scale[i, j // group_size]`` with ``q`` in ``[-8, 7]``, two values
per byte. Two resident layouts (see :mod:`.int4_layout`):

* ``cpu``: torch's tiled pack, used by ``torch._weight_int4pack_mm_for_cpu``, with the
  scales stored as that kernel's ``[in // g, out, 2]`` (scale, zero) pairs (zero = 0);
* ``nibble``: the portable ``[out, in // 2]`` bytes and ``[out, in // g]`` scales read
  by the Triton W4A16 GEMM on CUDA.

Called by the model's loader (quantize at load time) and the compressed-tensors decoder.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from deepseek_runtime.kernels.dispatch import backend_for
from deepseek_runtime.kernels.quant import int4_layout
from deepseek_runtime.kernels.quant.base import flatten_tokens, tensor_bytes

Int4Layout = Literal["cpu", "nibble"]
INT4_QMAX = 7
DEFAULT_GROUP_SIZE = 128
CPU_GROUP_SIZES = (32, 64, 128, 256)  # what torch's packed CPU int4 matmul takes
CPU_ROW_MULTIPLE = 16  # ... and its packing needs out_features to be a multiple of this


@dataclass(frozen=True, slots=True)
class Int4Weight:
    """An ``[out, in]`` weight as packed int4 values and group scales (compute dtype)."""

    packed: torch.Tensor  # [out, in // 2] uint8 in ``layout``
    scales: torch.Tensor  # cpu: [in // g, out, 2]; nibble: [out, in // g]
    group_size: int
    in_features: int
    layout: Int4Layout

    def __post_init__(self) -> None:
        rows = self.packed.shape[0]
        groups = self.in_features // self.group_size
        want = (groups, rows, 2) if self.layout == "cpu" else (rows, groups)
        if self.in_features % self.group_size or tuple(self.scales.shape) != want:
            raise ValueError(
                f"int4 {self.layout} weight with in_features={self.in_features}, "
                f"group_size={self.group_size} needs scales {want}, "
                f"got {tuple(self.scales.shape)}"
            )

    @property
    def out_features(self) -> int:
        return int(self.packed.shape[0])

    @property
    def nbytes(self) -> int:
        return tensor_bytes(self.packed, self.scales)

    @property
    def dtype(self) -> torch.dtype:
        """The compute dtype (that of the scales)."""
        return self.scales.dtype

    def group_scales(self) -> torch.Tensor:
        """``[out, in // group_size]`` scales, whatever the layout."""
        return self.scales[..., 0].t() if self.layout == "cpu" else self.scales

    def int_values(self) -> torch.Tensor:
        """The signed ``[out, in]`` int4 values as int8 (tests, format conversion)."""
        if self.layout == "cpu":
            return int4_layout.unpack_cpu(self.packed, self.out_features, self.in_features)
        return int4_layout.unpack_nibbles(self.packed)

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        rows, lead = flatten_tokens(x, self.in_features)
        compute = rows.to(self.dtype).contiguous()
        y: torch.Tensor
        if self.layout == "cpu":
            y = torch._weight_int4pack_mm_for_cpu(
                compute, self.packed, self.group_size, self.scales
            )
        elif backend_for(x.device.type) == "triton":
            from deepseek_runtime.kernels.triton.gemm import w4a16_gemm  # noqa: PLC0415

            y = w4a16_gemm(compute, self.packed, self.scales, self.group_size)
        else:
            # the nibble layout off CUDA: reference checks, and shapes torch's CPU kernel
            # does not take (see cpu_layout_fits); this path dequantizes per call
            y = F.linear(compute, self.dequantize())
        return y.to(x.dtype).reshape(*lead, self.out_features)

    def dequantize(self) -> torch.Tensor:
        scales = self.group_scales().float().repeat_interleave(self.group_size, dim=1)
        return (self.int_values().to(scales.device).float() * scales).to(self.dtype)


def cpu_layout_fits(out_features: int, in_features: int, group_size: int) -> bool:
    """Whether torch's CPU int4 kernel takes this shape (rows by 16, its group sizes)."""
    return (
        out_features % CPU_ROW_MULTIPLE == 0
        and group_size in CPU_GROUP_SIZES
        and in_features % group_size == 0
    )


def default_layout(device: torch.device, shape: tuple[int, int], group_size: int) -> Int4Layout:
    """The layout whose kernel runs on ``device``: torch's tiles on CPU when the shape fits
    them (else nibbles, whose CPU path dequantizes per call), nibbles on CUDA."""
    fits = cpu_layout_fits(shape[0], shape[1], group_size)
    return "cpu" if device.type == "cpu" and fits else "nibble"


def int4_from_values(
    q: torch.Tensor,
    scales: torch.Tensor,
    group_size: int,
    layout: Int4Layout | None = None,
) -> Int4Weight:
    """Pack signed int4 values ``[out, in]`` and scales ``[out, in // g]`` into a weight.

    The scales' dtype becomes the compute dtype. Used by the quantizer below and by the
    checkpoint decoders, which already hold the integer values.
    """
    if q.dim() != 2:
        raise ValueError(f"int4 values must be 2-D, got shape {tuple(q.shape)}")
    out_features, in_features = int(q.shape[0]), int(q.shape[1])
    if group_size <= 0 or in_features % group_size:
        raise ValueError(f"group_size {group_size} must divide in_features {in_features}")
    chosen = layout or default_layout(q.device, (out_features, in_features), group_size)
    if chosen == "cpu":
        if not cpu_layout_fits(out_features, in_features, group_size):
            raise ValueError(
                f"torch's CPU int4 layout needs out_features % {CPU_ROW_MULTIPLE} == 0 and a "
                f"group size in {CPU_GROUP_SIZES}; got [{out_features}, {in_features}], "
                f"group {group_size}"
            )
        packed = int4_layout.pack_cpu(q.cpu())
        pairs = torch.stack((scales.t(), torch.zeros_like(scales.t())), dim=-1)
        return Int4Weight(packed, pairs.contiguous(), group_size, in_features, "cpu")
    packed = int4_layout.pack_nibbles(q)
    return Int4Weight(packed, scales.contiguous(), group_size, in_features, "nibble")


def int4_scales(weight: torch.Tensor, group_size: int) -> torch.Tensor:
    """Symmetric group scales ``amax / 7`` in fp32, ``[out, in // g]`` (zero groups: 1)."""
    out_features, in_features = weight.shape
    groups = weight.float().reshape(out_features, in_features // group_size, group_size)
    amax = groups.abs().amax(dim=-1)
    return torch.where(amax > 0, amax / INT4_QMAX, torch.ones_like(amax))


def quantize_int4(
    weight: torch.Tensor,
    group_size: int = DEFAULT_GROUP_SIZE,
    dtype: torch.dtype = torch.bfloat16,
    layout: Int4Layout | None = None,
) -> Int4Weight:
    """Quantize a dense ``[out, in]`` fp32/bf16 weight to :class:`Int4Weight`.

    Args:
        weight: the dense weight, ``[out, in]``.
        group_size: input columns per scale (must divide ``in``; 128 by default).
        dtype: compute dtype (scales are stored in it; bf16 is the fast CPU path).
        layout: ``cpu`` or ``nibble``; by default the one for ``weight``'s device and
            shape (:func:`default_layout`).

    Raises:
        ValueError: when ``weight`` is not 2-D or ``group_size`` does not divide ``in``.
    """
    if weight.dim() != 2:
        raise ValueError(f"weight must be 2-D, got shape {tuple(weight.shape)}")
    if group_size <= 0 or weight.shape[1] % group_size:
        raise ValueError(f"group_size {group_size} must divide in_features {weight.shape[1]}")
    scales = int4_scales(weight, group_size).to(dtype)
    expanded = scales.float().repeat_interleave(group_size, dim=1)
    q = torch.round(weight.float() / expanded).clamp(-INT4_QMAX - 1, INT4_QMAX)
    return int4_from_values(q.to(torch.int8), scales, group_size, layout)
