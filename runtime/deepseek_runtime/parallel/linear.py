"""Tensor-parallel linear layers that load their own shard (nano-vllm / Megatron style).

Called by the model files, which compose them (not wired yet: see
``docs/runtime-parallel.md``). The math goes through
:func:`deepseek_runtime.kernels.linear.linear`, so FP8 / int8 / int4 shards plug in as
they do for the unsplit model. With ``W`` of shape ``[out, in]`` split over ``T`` ranks::

    column:  W = [W_0; W_1; ...] (rows)   y_r = x W_r^T        -> gather if asked
    row:     W = [W_0 | W_1 | ...] (cols) y = sum_r x_r W_r^T  -> all-reduce, then bias

A column layer followed by a row layer (MLP: gate/up then down; attention: heads then
``o_proj``) needs one all-reduce and no gather in between.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from deepseek_runtime.kernels.linear import Weight, concat_rows, linear
from deepseek_runtime.parallel.config import shard_bounds
from deepseek_runtime.parallel.groups import ParallelContext
from deepseek_runtime.parallel.shard_loading import (
    ShardSource,
    load_linear_slice,
    load_slice,
    weight_nbytes,
)


def _bias(
    source: ShardSource, name: str, size: int, bounds: tuple[int, int], enabled: bool
) -> torch.Tensor | None:
    return load_slice(source, f"{name}.bias", (size,), 0, bounds) if enabled else None


class ColumnParallelLinear:
    """``y = x W^T + b`` with this rank holding output rows ``bounds`` (default: 1/TP).

    Args:
        source: the checkpoint.
        name: layer prefix (reads ``{name}.weight`` and, with ``bias``, ``{name}.bias``).
        in_features / out_features: the full weight's shape is ``[out, in]``.
        ctx: this rank's parallel context.
        bias: load and add a bias.
        gather_output: all-gather the shards so every rank returns the full ``y``.
        bounds: explicit output rows (for head-wise or replicated splits).
    """

    def __init__(
        self,
        source: ShardSource,
        name: str,
        in_features: int,
        out_features: int,
        ctx: ParallelContext,
        *,
        bias: bool = False,
        gather_output: bool = False,
        bounds: tuple[int, int] | None = None,
    ) -> None:
        self.tp = ctx.tp
        rows = bounds or shard_bounds(out_features, ctx.tp.size, ctx.tp.rank, f"{name} rows")
        self.out_local = rows[1] - rows[0]
        self.weight: Weight = load_linear_slice(
            source, f"{name}.weight", (out_features, in_features), 0, rows
        )
        self.bias = _bias(source, name, out_features, rows, bias)
        self.gather_output = gather_output

    @property
    def nbytes(self) -> int:
        return weight_nbytes(self.weight) + weight_nbytes(self.bias)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        y = linear(x, self.weight, self.bias)
        return self.tp.all_gather(y, dim=-1) if self.gather_output else y


class RowParallelLinear:
    """``y = x W^T + b`` with this rank holding input columns ``1/TP`` and ``x``'s shard.

    Args:
        reduce_output: all-reduce the partial sums (off when the caller fuses this
            reduction with another one, e.g. shared + routed experts; the bias is then
            added on TP rank 0 only, so the eventual sum holds it once).
    """

    def __init__(
        self,
        source: ShardSource,
        name: str,
        in_features: int,
        out_features: int,
        ctx: ParallelContext,
        *,
        bias: bool = False,
        reduce_output: bool = True,
        bounds: tuple[int, int] | None = None,
    ) -> None:
        self.tp = ctx.tp
        cols = bounds or shard_bounds(in_features, ctx.tp.size, ctx.tp.rank, f"{name} columns")
        self.in_local = cols[1] - cols[0]
        self.weight: Weight = load_linear_slice(
            source, f"{name}.weight", (out_features, in_features), 1, cols
        )
        self.bias = _bias(source, name, out_features, (0, out_features), bias)
        self.reduce_output = reduce_output

    @property
    def nbytes(self) -> int:
        return weight_nbytes(self.weight) + weight_nbytes(self.bias)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` holds this rank's ``in_local`` input features."""
        y = linear(x, self.weight)
        if not self.reduce_output:
            return y + self.bias if self.bias is not None and self.tp.rank == 0 else y
        y = self.tp.all_reduce(y)
        return y if self.bias is None else y + self.bias


class MergedColumnParallelLinear:
    """Several column-parallel weights over the same input fused into one GEMM.

    For SwiGLU's ``gate_proj`` / ``up_proj``: each rank holds its 1/TP rows of each and
    stacks them, so the local output is ``[gate_r | up_r]`` and :meth:`split` cuts it.
    """

    def __init__(
        self,
        source: ShardSource,
        names: Sequence[str],
        in_features: int,
        out_features: Sequence[int],
        ctx: ParallelContext,
    ) -> None:
        if not names or len(names) != len(out_features):
            raise ValueError("MergedColumnParallelLinear: one output size per weight name")
        parts: list[Weight] = []
        self.out_local: list[int] = []
        for name, out in zip(names, out_features, strict=True):
            rows = shard_bounds(out, ctx.tp.size, ctx.tp.rank, f"{name} rows")
            parts.append(load_linear_slice(source, f"{name}.weight", (out, in_features), 0, rows))
            self.out_local.append(rows[1] - rows[0])
        fused = parts[0]
        for part in parts[1:]:
            fused = concat_rows(fused, part)
        self.weight: Weight = fused

    @property
    def nbytes(self) -> int:
        return weight_nbytes(self.weight)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight)

    def split(self, y: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The local output cut back into one tensor per merged weight."""
        return tuple(torch.split(y, self.out_local, dim=-1))
