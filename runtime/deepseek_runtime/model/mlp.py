"""SwiGLU MLP: DeepSeek's dense layers (the first ``first_k_dense_replace``) and shared experts.

Called by :class:`~deepseek_runtime.model.deepseek.DecoderLayer` and
:class:`~deepseek_runtime.model.moe.MoE`.
"""

from __future__ import annotations

import torch

from deepseek_runtime.checkpoint.weights import WeightStore
from deepseek_runtime.kernels.cpu.packed import PackedWeight
from deepseek_runtime.kernels.linear import concat_rows, linear, silu_and_mul


class DenseMLP:
    """``down(silu(gate(x)) * up(x))`` with ``gate``/``up`` fused into one GEMM."""

    def __init__(self, store: WeightStore, prefix: str, hidden: int, inter: int) -> None:
        gate = store.get_linear(f"{prefix}.gate_proj.weight", (inter, hidden))
        up = store.get_linear(f"{prefix}.up_proj.weight", (inter, hidden))
        self.gate_up = concat_rows(gate, up)
        self.down = store.get_linear(f"{prefix}.down_proj.weight", (hidden, inter))
        self.inter = inter
        # packed weights mean the native CPU kernels are loaded: fuse the activation too
        self.native = isinstance(self.gate_up, PackedWeight)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        gate_up = linear(x, self.gate_up)
        if self.native:
            hidden: torch.Tensor = torch.ops.dsr_cpu.silu_mul(gate_up, self.inter)
        else:
            hidden = silu_and_mul(gate_up[:, : self.inter], gate_up[:, self.inter :])
        return linear(hidden, self.down)
