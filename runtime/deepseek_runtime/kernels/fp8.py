"""FP8 e4m3 block-scaled weights (DeepSeek-V3's checkpoint format), reference on CPU.

A quantized weight ``W`` of shape ``[out, in]`` is stored as ``float8_e4m3fn`` together with
``weight_scale_inv`` of shape ``[ceil(out / bo), ceil(in / bi)]`` (``bo = bi = 128`` in the
released checkpoints); the real weight is ``W[i, j] * scale_inv[i // bo, j // bi]``.

Called by the checkpoint loader (dequantize at load) and by ``make_tiny`` (quantize).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from deepseek_runtime.kernels.dispatch import backend_for

FP8_DTYPE = torch.float8_e4m3fn
FP8_MAX = float(torch.finfo(FP8_DTYPE).max)  # 448.0


def _expand_scales(
    scale_inv: torch.Tensor, shape: torch.Size, block: tuple[int, int]
) -> torch.Tensor:
    rows, cols = shape
    bo, bi = block
    want = ((rows + bo - 1) // bo, (cols + bi - 1) // bi)
    if tuple(scale_inv.shape) != want:
        raise ValueError(
            f"weight_scale_inv has shape {tuple(scale_inv.shape)}, expected {want} "
            f"for a weight of shape {tuple(shape)} with {bo}x{bi} blocks"
        )
    expanded = scale_inv.float().repeat_interleave(bo, dim=0).repeat_interleave(bi, dim=1)
    return expanded[:rows, :cols]


def dequantize_fp8_blocks(
    weight: torch.Tensor,
    scale_inv: torch.Tensor,
    block: tuple[int, int] = (128, 128),
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Return ``weight * scale_inv`` (per block) as ``dtype``; ``weight`` is 2-D FP8."""
    if weight.dim() != 2:
        raise ValueError(f"FP8 weight must be 2-D, got shape {tuple(weight.shape)}")
    scales = _expand_scales(scale_inv, weight.shape, block)
    return (weight.float() * scales).to(dtype)


def quantize_fp8_blocks(
    weight: torch.Tensor, block: tuple[int, int] = (128, 128)
) -> tuple[torch.Tensor, torch.Tensor]:
    """Quantize a 2-D weight to FP8 e4m3 with one scale per block; returns (fp8, scale_inv)."""
    if weight.dim() != 2:
        raise ValueError(f"weight must be 2-D, got shape {tuple(weight.shape)}")
    rows, cols = weight.shape
    bo, bi = block
    nbo, nbi = (rows + bo - 1) // bo, (cols + bi - 1) // bi
    padded = torch.zeros(nbo * bo, nbi * bi, dtype=torch.float32)
    padded[:rows, :cols] = weight.float()
    blocks = padded.view(nbo, bo, nbi, bi)
    amax = blocks.abs().amax(dim=(1, 3)).clamp(min=1e-12)
    scale_inv = amax / FP8_MAX
    expanded = _expand_scales(scale_inv, weight.shape, block)
    quantized = (weight.float() / expanded).clamp(-FP8_MAX, FP8_MAX).to(FP8_DTYPE)
    return quantized, scale_inv


@dataclass(frozen=True, slots=True)
class Fp8Weight:
    """A linear weight kept in FP8 with its block scales (for block-scaled GEMM kernels).

    The CPU reference dequantizes on use; on CUDA the Triton block-scaled GEMM consumes
    ``data`` and ``scale_inv`` directly. It satisfies
    :class:`~deepseek_runtime.kernels.quant.base.QuantizedWeight`.
    """

    data: torch.Tensor  # [out, in] float8_e4m3fn
    scale_inv: torch.Tensor  # [ceil(out / bo), ceil(in / bi)] fp32
    block: tuple[int, int]
    dtype: torch.dtype  # compute dtype

    @property
    def shape(self) -> torch.Size:
        return self.data.shape

    @property
    def out_features(self) -> int:
        return int(self.data.shape[0])

    @property
    def in_features(self) -> int:
        return int(self.data.shape[1])

    @property
    def nbytes(self) -> int:
        """Resident bytes: one byte per weight plus the fp32 block scales."""
        return sum(t.numel() * t.element_size() for t in (self.data, self.scale_inv))

    def dequantize(self) -> torch.Tensor:
        return dequantize_fp8_blocks(self.data, self.scale_inv, self.block, self.dtype)

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """``x @ W.T``: the Triton block-scaled GEMM on CUDA, dequantize-and-matmul here."""
        if backend_for(x.device.type) == "triton" and self.block == (128, 128):
            # Triton loads only where it runs (CUDA)
            from deepseek_runtime.kernels.triton.gemm import fp8_block_gemm  # noqa: PLC0415

            rows = x.reshape(-1, self.in_features)
            y = fp8_block_gemm(rows, self.data, self.scale_inv)
            return y.to(x.dtype).reshape(*x.shape[:-1], self.out_features)
        dense: torch.Tensor = torch.nn.functional.linear(x, self.dequantize().to(x.dtype))
        return dense

    def concat_rows(self, other: Fp8Weight) -> Fp8Weight | None:
        """``[self; other]`` stacked by rows, or None when the rows do not align to blocks."""
        if (
            self.block != other.block
            or self.shape[0] % self.block[0]
            or self.shape[1] != other.shape[1]
        ):
            return None
        return Fp8Weight(
            torch.cat((self.data, other.data)),
            torch.cat((self.scale_inv, other.scale_inv)),
            self.block,
            self.dtype,
        )
