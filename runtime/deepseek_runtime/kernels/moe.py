"""Fused MoE dispatch: run each token's chosen experts, grouped by expert (reference on CPU).

Called by :class:`deepseek_runtime.model.moe.MoE`. Tokens are *gathered per expert*: the
``N x K`` (token, choice) pairs are sorted by expert id so that every expert runs one GEMM
over all of its tokens, instead of looping over tokens::

    topk_ids [N, K] --flatten+argsort--> pairs grouped by expert
       expert e: rows = x[token_of(pairs_e)] -> gate_up -> silu*mul -> down -> y_e
    out[n] = sum_k weight[n, k] * y[(n, k)]
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from deepseek_runtime.kernels.cpu.packed import StackedPackedWeights
from deepseek_runtime.kernels.dispatch import backend_for
from deepseek_runtime.kernels.linear import Weight, linear, silu_and_mul
from deepseek_runtime.kernels.quant.experts import StackedInt4Weights, StackedInt8Weights

ExpertWeights = Sequence[Weight] | torch.Tensor | StackedPackedWeights


def fused_moe(
    x: torch.Tensor,
    topk_ids: torch.Tensor,
    topk_weights: torch.Tensor,
    w_gate_up: ExpertWeights,
    w_down: ExpertWeights,
) -> torch.Tensor:
    """Mixture-of-experts forward.

    Args:
        x: ``[N, hidden]`` token activations.
        topk_ids: ``[N, K]`` chosen expert ids.
        topk_weights: ``[N, K]`` routing weights (already scaled).
        w_gate_up: per expert ``[2 * inter, hidden]``, gate rows first then up rows
            (a stacked ``[E, 2 * inter, hidden]`` tensor or a sequence of weights).
        w_down: per expert ``[hidden, inter]``.

    Returns:
        ``[N, hidden]``: the weighted sum of the chosen experts' outputs.
    """
    n_tokens, k = topk_ids.shape
    if n_tokens == 0:
        return torch.zeros_like(x)
    num_experts = len(w_gate_up)
    flat_ids = topk_ids.reshape(-1)
    order = torch.argsort(flat_ids, stable=True)
    counts = torch.bincount(flat_ids, minlength=num_experts).tolist()
    token_of = order // k
    y_sorted = x.new_empty(n_tokens * k, x.shape[1])
    start = 0
    for expert, count in enumerate(counts):
        if count == 0:
            continue
        end = start + count
        rows = x.index_select(0, token_of[start:end])
        gate_up = linear(rows, w_gate_up[expert])
        inter = gate_up.shape[1] // 2
        hidden = silu_and_mul(gate_up[:, :inter], gate_up[:, inter:])
        y_sorted[start:end] = linear(hidden, w_down[expert])
        start = end
    y = torch.empty_like(y_sorted)
    y[order] = y_sorted
    weighted = y.view(n_tokens, k, -1) * topk_weights.to(y.dtype).unsqueeze(-1)
    return weighted.sum(dim=1)


def moe_forward(
    x: torch.Tensor,
    topk_ids: torch.Tensor,
    topk_weights: torch.Tensor,
    w_gate_up: ExpertWeights,
    w_down: ExpertWeights,
) -> torch.Tensor:
    """:func:`fused_moe`, run as the Triton grouped GEMM when ``x`` is on CUDA, or as
    the native CPU kernel's single call when the experts are panel-packed.

    The Triton path needs each projection stacked per layer (a ``[E, out, in]`` tensor or
    a :mod:`~deepseek_runtime.kernels.quant.experts` stack); a plain list of per-expert
    weights always takes the reference loop.
    """
    if isinstance(w_gate_up, StackedPackedWeights) and isinstance(w_down, StackedPackedWeights):
        routed: torch.Tensor = torch.ops.dsr_cpu.moe_packed(
            x.contiguous(),
            topk_ids.to(torch.int64).contiguous(),
            topk_weights.to(torch.float32).contiguous(),
            w_gate_up.panels,
            w_down.panels,
            w_down.in_features,
        )
        return routed
    stacked = (torch.Tensor, StackedInt8Weights, StackedInt4Weights)
    if (
        isinstance(w_gate_up, stacked)
        and isinstance(w_down, stacked)
        and backend_for(x.device.type) == "triton"
    ):
        # Triton loads only where it runs (CUDA)
        from deepseek_runtime.kernels.triton.moe import triton_fused_moe  # noqa: PLC0415

        return triton_fused_moe(x, topk_ids, topk_weights, w_gate_up, w_down)
    return fused_moe(x, topk_ids, topk_weights, w_gate_up, w_down)
