"""fp32 linear weights held in the CPU kernels' panel layout.

A ``[out, in]`` weight becomes ``[ceil(out / 16), in, 16]``: panel ``p`` holds output
columns ``16p .. 16p + 15`` for every input feature, contiguously, so the GEMM reads each
panel once, front to back (``dsr_cpu.cpp`` says why that layout). The last panel is
zero-padded. Packing happens once at load; the dense weight is not kept.

:class:`PackedWeight` satisfies :class:`~deepseek_runtime.kernels.quant.base.QuantizedWeight`,
so :func:`~deepseek_runtime.kernels.linear.linear` and everything that handles a
compact weight (fusing rows, resident-byte counts, dequantizing for reference tests)
takes it unchanged. :class:`StackedPackedWeights` is one such stack per MoE projection,
which ``torch.ops.dsr_cpu.moe_packed`` reads as a whole.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from deepseek_runtime.kernels.quant.base import flatten_tokens, tensor_bytes

PANEL = 16
"""Output columns per panel: two AVX2 registers of fp32."""


def pack_panels(dense: torch.Tensor) -> torch.Tensor:
    """``[out, in]`` fp32 -> ``[ceil(out / 16), in, 16]`` (last panel zero-padded)."""
    if dense.dim() != 2 or dense.dtype != torch.float32 or dense.device.type != "cpu":
        raise ValueError(
            f"packing takes a 2-D float32 CPU weight, got {tuple(dense.shape)} {dense.dtype} "
            f"on {dense.device}"
        )
    out_features, in_features = dense.shape
    panels = -(-out_features // PANEL)
    padded = dense
    if panels * PANEL != out_features:
        padded = dense.new_zeros(panels * PANEL, in_features)
        padded[:out_features] = dense
    return padded.view(panels, PANEL, in_features).transpose(1, 2).contiguous()


def unpack_panels(panels: torch.Tensor, out_features: int) -> torch.Tensor:
    """The inverse of :func:`pack_panels`: the dense ``[out, in]`` weight."""
    count, in_features, _ = panels.shape
    dense = panels.transpose(1, 2).reshape(count * PANEL, in_features)
    return dense[:out_features].contiguous()


@dataclass(frozen=True, slots=True)
class PackedWeight:
    """One linear weight in panel layout (see the module docstring)."""

    panels: torch.Tensor
    out_features: int
    in_features: int

    @classmethod
    def pack(cls, dense: torch.Tensor) -> PackedWeight:
        return cls(pack_panels(dense), int(dense.shape[0]), int(dense.shape[1]))

    @property
    def nbytes(self) -> int:
        return tensor_bytes(self.panels)

    def apply(self, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        """``x @ W.T (+ bias)`` for ``x`` ``[..., in]`` float32."""
        flat, lead = flatten_tokens(x, self.in_features)
        if flat.stride(-1) != 1:
            flat = flat.contiguous()
        y: torch.Tensor = torch.ops.dsr_cpu.linear_packed(
            flat, self.panels, self.out_features, bias
        )
        return y.view(*lead, self.out_features)

    def dequantize(self) -> torch.Tensor:
        return unpack_panels(self.panels, self.out_features)


@dataclass(frozen=True, slots=True)
class StackedPackedWeights:
    """One MoE projection of every expert: ``[E, panels, in, 16]``."""

    panels: torch.Tensor
    out_features: int
    in_features: int

    @classmethod
    def stack(cls, weights: list[PackedWeight]) -> StackedPackedWeights:
        first = weights[0]
        if any(
            (w.out_features, w.in_features) != (first.out_features, first.in_features)
            for w in weights
        ):
            raise ValueError("every expert's weight must have the same shape to be stacked")
        panels = torch.stack([w.panels for w in weights])
        return cls(panels, first.out_features, first.in_features)

    @property
    def nbytes(self) -> int:
        return tensor_bytes(self.panels)

    def __len__(self) -> int:
        return int(self.panels.shape[0])

    def __getitem__(self, expert: int) -> PackedWeight:
        return PackedWeight(self.panels[expert], self.out_features, self.in_features)
