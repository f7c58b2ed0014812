"""Tensor-parallel SwiGLU MLP: DeepSeek's dense layers, shared experts and the distills' MLP.

Called by the model files (not wired yet). ``gate_proj`` / ``up_proj`` are merged
column-parallel (each rank: ``intermediate / TP`` rows of each), ``down_proj`` is
row-parallel, so the layer costs one all-reduce -- or none, when the caller folds the
reduction into another (the MoE block sums shared and routed experts first).
"""

from __future__ import annotations

import torch

from deepseek_runtime.kernels.linear import silu_and_mul
from deepseek_runtime.parallel.groups import ParallelContext
from deepseek_runtime.parallel.linear import MergedColumnParallelLinear, RowParallelLinear
from deepseek_runtime.parallel.shard_loading import ShardSource


class ParallelMLP:
    """``down(silu(gate(x)) * up(x))`` over this rank's ``intermediate / TP`` slice.

    Args:
        prefix: reads ``{prefix}.{gate,up,down}_proj.weight``.
        hidden / inter: the full model's width and intermediate size.
        reduce_output: all-reduce the result (off: return this rank's partial sum).
    """

    def __init__(
        self,
        source: ShardSource,
        prefix: str,
        hidden: int,
        inter: int,
        ctx: ParallelContext,
        *,
        reduce_output: bool = True,
    ) -> None:
        self.gate_up = MergedColumnParallelLinear(
            source, [f"{prefix}.gate_proj", f"{prefix}.up_proj"], hidden, [inter, inter], ctx
        )
        self.down = RowParallelLinear(
            source, f"{prefix}.down_proj", inter, hidden, ctx, reduce_output=reduce_output
        )

    @property
    def nbytes(self) -> int:
        return self.gate_up.nbytes + self.down.nbytes

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up.split(self.gate_up(x))
        return self.down(silu_and_mul(gate, up))
