"""Read one rank's slice of a checkpoint tensor, never the whole tensor.

Called by the parallel layers (:mod:`~deepseek_runtime.parallel.linear`,
:mod:`~deepseek_runtime.parallel.vocab`, :mod:`~deepseek_runtime.parallel.experts`) with a
:class:`~deepseek_runtime.checkpoint.weights.WeightStore`. Slices come from
``safe_open(...).get_slice(name)[...]`` (``WeightStore.raw_slice``), so a rank's resident
bytes are its shard's bytes.

DeepSeek-V3 FP8 weights carry a ``weight_scale_inv`` with one scale per
``bo x bi`` block. A split along rows (dim 0) or columns (dim 1) must start on a block
boundary and end on one (or at the tensor's end); the rank then takes the matching
block rows / columns of the scales::

    weight [out, in], split rows [start, stop)  ->  scale rows [start / bo, ceil(stop / bo))

A split that cuts through a block raises :class:`ShardError` naming the tensor.
"""

from __future__ import annotations

from typing import Protocol

import torch

from deepseek_runtime.checkpoint.weights import CheckpointError
from deepseek_runtime.kernels.fp8 import FP8_DTYPE, Fp8Weight, dequantize_fp8_blocks
from deepseek_runtime.kernels.linear import Weight


class ShardError(CheckpointError):
    """A tensor cannot be split as asked (not divisible, or not on FP8 block boundaries)."""


class ShardSource(Protocol):
    """What shard loading needs of a checkpoint (``WeightStore`` satisfies it)."""

    dtype: torch.dtype
    fp8_block: tuple[int, int]
    keep_fp8: bool
    device: torch.device

    def has(self, name: str) -> bool: ...

    def raw_slice(
        self, name: str, shape: tuple[int, ...], dim: int, start: int, stop: int
    ) -> torch.Tensor: ...


def _scale_bounds(name: str, size: int, block: int, start: int, stop: int) -> tuple[int, int]:
    if start % block or (stop % block and stop != size):
        raise ShardError(
            f"FP8 tensor {name!r}: the shard [{start}:{stop}) of {size} does not fall on "
            f"{block}-wide scale blocks; choose a parallel size whose shards are multiples "
            f"of {block}"
        )
    return start // block, -(-stop // block)


def _fp8_shard(
    source: ShardSource,
    name: str,
    shape: tuple[int, ...],
    dim: int,
    bounds: tuple[int, int],
    *,
    data: torch.Tensor,
) -> Fp8Weight:
    if len(shape) != 2:
        raise ShardError(f"FP8 tensor {name!r} must be 2-D, has shape {shape}")
    scale_name = f"{name}_scale_inv"
    if not source.has(scale_name):
        raise ShardError(f"FP8 tensor {name!r} has no {scale_name!r}")
    block = source.fp8_block
    scale_shape = (-(-shape[0] // block[0]), -(-shape[1] // block[1]))
    lo, hi = _scale_bounds(name, shape[dim], block[dim], *bounds)
    scale = source.raw_slice(scale_name, scale_shape, dim, lo, hi).float()
    return Fp8Weight(data.to(source.device), scale.to(source.device), block, source.dtype)


def load_linear_slice(
    source: ShardSource,
    name: str,
    shape: tuple[int, ...],
    dim: int,
    bounds: tuple[int, int],
) -> Weight:
    """Rows (``dim=0``) or columns (``dim=1``) ``bounds`` of linear weight ``name``.

    Kept as :class:`Fp8Weight` (with its sliced block scales) when stored in FP8 and the
    source keeps FP8; else dense in the source's dtype.

    Args:
        source: the checkpoint.
        name: tensor name, e.g. ``model.layers.0.mlp.gate_proj.weight``.
        shape: the full tensor's shape (checked against the file).
        dim: the dimension split.
        bounds: ``[start, stop)`` along ``dim`` held by this rank.
    """
    data = source.raw_slice(name, shape, dim, *bounds)
    if data.dtype != FP8_DTYPE:
        return data.to(device=source.device, dtype=source.dtype)
    weight = _fp8_shard(source, name, shape, dim, bounds, data=data)
    if source.keep_fp8:
        return weight
    dense = dequantize_fp8_blocks(weight.data, weight.scale_inv, weight.block, source.dtype)
    return dense.to(source.device)


def load_slice(
    source: ShardSource,
    name: str,
    shape: tuple[int, ...],
    dim: int,
    bounds: tuple[int, int],
    *,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """A dense slice of ``name`` (FP8 dequantized) as ``dtype`` (default: the source's)."""
    data = source.raw_slice(name, shape, dim, *bounds)
    target = dtype or source.dtype
    if data.dtype == FP8_DTYPE:
        weight = _fp8_shard(source, name, shape, dim, bounds, data=data)
        return dequantize_fp8_blocks(weight.data, weight.scale_inv, weight.block, target)
    return data.to(device=source.device, dtype=target)


def weight_nbytes(weight: Weight | None) -> int:
    """Bytes a loaded weight keeps resident: its storage, not just the visible elements.

    A view into a larger tensor would count the whole storage, so a shard that secretly
    kept the full tensor alive shows up here.
    """
    if weight is None:
        return 0
    if isinstance(weight, torch.Tensor):
        return int(weight.untyped_storage().nbytes())
    if isinstance(weight, Fp8Weight):
        return int(weight.data.untyped_storage().nbytes()) + int(
            weight.scale_inv.untyped_storage().nbytes()
        )
    return int(getattr(weight, "nbytes", 0))
