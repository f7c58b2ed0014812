"""Routed-expert weights of one MoE layer, stacked ``[E, out, in]`` and kept quantized.

One tensor per layer (not one per expert) is what a grouped GEMM indexes by expert id.
The stacks are also sequences of per-expert weights whose tensors are views into the
stack, so :func:`deepseek_runtime.kernels.moe.fused_moe` runs them unchanged on CPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import overload

import torch

from deepseek_runtime.kernels.quant.base import tensor_bytes
from deepseek_runtime.kernels.quant.int4 import (
    DEFAULT_GROUP_SIZE,
    Int4Layout,
    Int4Weight,
    quantize_int4,
)
from deepseek_runtime.kernels.quant.int8 import Int8Weight, quantize_int8


@dataclass(frozen=True, slots=True)
class StackedInt8Weights(Sequence[Int8Weight]):
    """``[E, out, in]`` int8 values and ``[E, out]`` scales."""

    qweight: torch.Tensor
    scales: torch.Tensor

    def __len__(self) -> int:
        return int(self.qweight.shape[0])

    @overload
    def __getitem__(self, index: int) -> Int8Weight: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Int8Weight]: ...
    def __getitem__(self, index: int | slice) -> Int8Weight | Sequence[Int8Weight]:
        if isinstance(index, slice):
            return StackedInt8Weights(self.qweight[index], self.scales[index])
        return Int8Weight(self.qweight[index], self.scales[index])

    @property
    def nbytes(self) -> int:
        return tensor_bytes(self.qweight, self.scales)


@dataclass(frozen=True, slots=True)
class StackedInt4Weights(Sequence[Int4Weight]):
    """``[E, out, in // 2]`` packed int4 values and the matching stacked scales."""

    packed: torch.Tensor
    scales: torch.Tensor
    group_size: int
    in_features: int
    layout: Int4Layout

    def __len__(self) -> int:
        return int(self.packed.shape[0])

    @overload
    def __getitem__(self, index: int) -> Int4Weight: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Int4Weight]: ...
    def __getitem__(self, index: int | slice) -> Int4Weight | Sequence[Int4Weight]:
        if isinstance(index, slice):
            return StackedInt4Weights(
                self.packed[index], self.scales[index], self.group_size,
                self.in_features, self.layout,
            )  # fmt: skip
        return Int4Weight(
            self.packed[index], self.scales[index], self.group_size, self.in_features, self.layout
        )

    @property
    def nbytes(self) -> int:
        return tensor_bytes(self.packed, self.scales)


def _check_stack(weights: torch.Tensor) -> None:
    if weights.dim() != 3:
        raise ValueError(f"expert weights must be [E, out, in], got {tuple(weights.shape)}")


def quantize_int8_experts(
    weights: torch.Tensor, dtype: torch.dtype = torch.bfloat16
) -> StackedInt8Weights:
    """Quantize ``[E, out, in]`` expert weights to int8 (one expert at a time)."""
    _check_stack(weights)
    parts = [quantize_int8(w, dtype) for w in weights]
    return StackedInt8Weights(
        torch.stack([p.qweight for p in parts]), torch.stack([p.scales for p in parts])
    )


def stack_int4(parts: Sequence[Int4Weight]) -> StackedInt4Weights:
    """Stack per-expert int4 weights of one shape, group size and layout."""
    first = parts[0]
    if any(
        (p.group_size, p.in_features, p.layout, p.out_features)
        != (first.group_size, first.in_features, first.layout, first.out_features)
        for p in parts
    ):
        raise ValueError("int4 experts must share shape, group size and layout to stack")
    return StackedInt4Weights(
        torch.stack([p.packed for p in parts]),
        torch.stack([p.scales for p in parts]),
        first.group_size,
        first.in_features,
        first.layout,
    )


def quantize_int4_experts(
    weights: torch.Tensor,
    group_size: int = DEFAULT_GROUP_SIZE,
    dtype: torch.dtype = torch.bfloat16,
    layout: Int4Layout | None = None,
) -> StackedInt4Weights:
    """Quantize ``[E, out, in]`` expert weights to int4 groups (one expert at a time)."""
    _check_stack(weights)
    return stack_int4([quantize_int4(w, group_size, dtype, layout) for w in weights])
