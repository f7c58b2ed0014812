"""DeepSeekMoE: router (V3 sigmoid + bias, group-limited; V2 softmax greedy / group-limited),
routed experts through the fused dispatch kernel, plus shared experts.

Called by :class:`~deepseek_runtime.model.deepseek.DecoderLayer`. Routing is computed in
fp32, as in transformers and DeepSeek's code.

V3 (``noaux_tc``)::

    s = sigmoid(x W_g^T);  c = s + e_score_correction_bias
    group score = sum of the top-2 c in each of n_group groups; keep topk_group groups
    experts = top-k of c over kept groups (others get -inf, or 0 with router_group_mask=zero)
    weights = s[experts] (/ sum if norm_topk_prob) * routed_scaling_factor

V2: ``s = softmax(x W_g^T)``; ``greedy`` = top-k of s; ``group_limited_greedy`` keeps the
``topk_group`` groups with the highest max score (others 0); weights ``s[experts]`` times
``routed_scaling_factor`` -- or, with ``norm_topk_prob`` (and k > 1), normalised to sum 1
and not rescaled, as DeepSeek's V2 code does. transformers 5.x ignores ``norm_topk_prob``
for V2; every released V2 / V2-Lite config has it off, where the two agree.

With a :class:`~deepseek_runtime.parallel.groups.ParallelContext` the router is replicated
(every rank routes the same tokens identically), the routed experts are split per expert
(:class:`~deepseek_runtime.parallel.experts.TensorParallelExperts`) or, with expert
parallelism, partitioned (:class:`~deepseek_runtime.parallel.experts.ExpertParallelExperts`),
the shared experts are column- then row-parallel, and one all-reduce sums both partials.
"""

from __future__ import annotations

import torch

from deepseek_runtime.checkpoint.config import DeepseekConfig
from deepseek_runtime.checkpoint.weights import WeightStore
from deepseek_runtime.kernels.cpu.packed import PackedWeight, StackedPackedWeights
from deepseek_runtime.kernels.linear import Weight, concat_rows, linear
from deepseek_runtime.kernels.moe import ExpertWeights, moe_forward
from deepseek_runtime.kernels.quant.experts import StackedInt8Weights, stack_int4
from deepseek_runtime.kernels.quant.int4 import Int4Weight
from deepseek_runtime.kernels.quant.int8 import Int8Weight
from deepseek_runtime.kernels.routing import RoutingSpec, select_experts
from deepseek_runtime.model.mlp import DenseMLP
from deepseek_runtime.parallel.experts import ExpertParallelExperts, TensorParallelExperts
from deepseek_runtime.parallel.groups import ParallelContext
from deepseek_runtime.parallel.mlp import ParallelMLP


class Router:
    """The router's weights and settings; the top-k math is
    :func:`~deepseek_runtime.kernels.routing.select_experts`."""

    def __init__(self, config: DeepseekConfig, store: WeightStore, prefix: str) -> None:
        self.num_experts = int(config.n_routed_experts or 0)
        self.method = config.routing_method
        self.scoring = config.scoring
        self.spec = RoutingSpec(
            method=self.method,
            top_k=int(config.num_experts_per_tok or 0),
            n_group=int(config.n_group or 1),
            topk_group=int(config.topk_group or 1),
            norm_topk_prob=config.norm_topk_prob,
            scaling=config.routed_scaling_factor,
            mask_value=float("-inf") if config.router_group_mask == "-inf" else 0.0,
        )
        self.weight = store.get(
            f"{prefix}.weight", (self.num_experts, config.hidden_size), torch.float32
        )
        self.bias: torch.Tensor | None = None
        if self.method == "noaux_tc":
            self.bias = store.get(
                f"{prefix}.e_score_correction_bias", (self.num_experts,), torch.float32
            )

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(topk_ids [N, K], topk_weights [N, K] fp32)`` for ``x`` ``[N, hidden]``."""
        logits = linear(x.to(torch.float32), self.weight)
        scores = logits.sigmoid() if self.scoring == "sigmoid" else logits.softmax(dim=-1)
        return select_experts(scores, self.spec, self.bias)


class MoE:
    """Shared experts + routed experts (stacked ``[E, ...]`` weights for the fused kernel)."""

    def __init__(self, config: DeepseekConfig, store: WeightStore, prefix: str) -> None:
        hidden, inter = config.hidden_size, config.moe_intermediate_size
        experts = int(config.n_routed_experts or 0)
        self.router = Router(config, store, f"{prefix}.gate")
        self.w_gate_up, self.w_down = _load_experts(
            store, f"{prefix}.experts", experts, hidden, inter
        )
        self.shared: DenseMLP | None = None
        if config.n_shared_experts:
            self.shared = DenseMLP(
                store, f"{prefix}.shared_experts", hidden, inter * config.n_shared_experts
            )

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        ids, weights = self.router(x)
        out = moe_forward(x, ids, weights, self.w_gate_up, self.w_down)
        if self.shared is not None:
            out = out + self.shared(x)
        return out


class ParallelMoE:
    """:class:`MoE` over a TP group: partial routed + shared outputs, one all-reduce."""

    def __init__(
        self, config: DeepseekConfig, store: WeightStore, prefix: str, ctx: ParallelContext
    ) -> None:
        hidden, inter = config.hidden_size, config.moe_intermediate_size
        experts = int(config.n_routed_experts or 0)
        self.tp = ctx.tp
        self.router = Router(config, store, f"{prefix}.gate")
        kind = ExpertParallelExperts if ctx.config.expert else TensorParallelExperts
        self.experts = kind(
            store, f"{prefix}.experts", ctx, num_experts=experts, hidden=hidden, inter=inter
        )
        self.shared: ParallelMLP | None = None
        if config.n_shared_experts:
            shared_inter = inter * config.n_shared_experts
            self.shared = ParallelMLP(
                store, f"{prefix}.shared_experts", hidden, shared_inter, ctx, reduce_output=False
            )

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        ids, weights = self.router(x)
        out = self.experts(x, ids, weights, reduce_output=False)
        if self.shared is not None:
            out = out + self.shared(x)
        return self.tp.all_reduce(out)


def _load_experts(
    store: WeightStore, prefix: str, experts: int, hidden: int, inter: int
) -> tuple[ExpertWeights, ExpertWeights]:
    """Per-expert weights (DeepSeek layout) or transformers' fused 3-D layout."""
    if store.has(f"{prefix}.gate_up_proj"):
        gate_up = store.get(f"{prefix}.gate_up_proj", (experts, 2 * inter, hidden))
        down = store.get(f"{prefix}.down_proj", (experts, hidden, inter))
        return (
            stack_experts([store.hold_linear(prefix, w) for w in gate_up]),
            stack_experts([store.hold_linear(prefix, w) for w in down]),
        )
    gate_up_list: list[Weight] = []
    down_list: list[Weight] = []
    for e in range(experts):
        gate = store.get_linear(f"{prefix}.{e}.gate_proj.weight", (inter, hidden))
        up = store.get_linear(f"{prefix}.{e}.up_proj.weight", (inter, hidden))
        gate_up_list.append(concat_rows(gate, up))
        down_list.append(store.get_linear(f"{prefix}.{e}.down_proj.weight", (hidden, inter)))
    return stack_experts(gate_up_list), stack_experts(down_list)


def stack_experts(weights: list[Weight]) -> ExpertWeights:
    """One ``[E, out, in]`` stack per projection when every expert has the same format
    (dense, panel-packed, int8 or int4), so a grouped GEMM reads them as one operand; else
    the list."""
    if all(isinstance(w, PackedWeight) for w in weights):
        return StackedPackedWeights.stack([w for w in weights if isinstance(w, PackedWeight)])
    if all(isinstance(w, torch.Tensor) for w in weights):
        return torch.stack(weights)  # type: ignore[arg-type]
    if all(isinstance(w, Int8Weight) for w in weights):
        int8 = [w for w in weights if isinstance(w, Int8Weight)]
        return StackedInt8Weights(
            torch.stack([w.qweight for w in int8]), torch.stack([w.scales for w in int8])
        )
    if all(isinstance(w, Int4Weight) for w in weights):
        return stack_int4([w for w in weights if isinstance(w, Int4Weight)])
    return weights
