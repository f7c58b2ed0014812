"""Router top-k: which experts each token goes to and with what weight (reference on CPU).

Called by :class:`deepseek_runtime.model.moe.Router`, which owns the router weights and
the config; this is the math, in fp32 as transformers and DeepSeek's code compute it, so
a fused GPU top-k kernel can replace it behind the same signature.

``noaux_tc`` (V3): experts are ranked on ``scores + bias``; groups are ranked by the sum
of their top-2 and only ``topk_group`` groups stay (others get ``mask_value``); the
weights are the *unbiased* scores of the chosen experts. ``group_limited_greedy`` (V2):
groups ranked by their best score, the others zeroed. ``greedy``: plain top-k.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True, slots=True)
class RoutingSpec:
    """The router's fixed settings (from ``config.json``)."""

    method: str  # noaux_tc | group_limited_greedy | greedy
    top_k: int
    n_group: int
    topk_group: int
    norm_topk_prob: bool
    scaling: float
    mask_value: float  # score of experts in dropped groups (noaux_tc): -inf or 0


def _group_mask(group_scores: torch.Tensor, spec: RoutingSpec, num_experts: int) -> torch.Tensor:
    chosen = torch.topk(group_scores, k=spec.topk_group, dim=-1, sorted=False)[1]
    mask = torch.zeros_like(group_scores, dtype=torch.bool)
    mask.scatter_(1, chosen, True)
    per_group = num_experts // spec.n_group
    return mask.unsqueeze(-1).expand(-1, spec.n_group, per_group).reshape(-1, num_experts)


def select_experts(
    scores: torch.Tensor, spec: RoutingSpec, bias: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(topk_ids [N, K], topk_weights [N, K] fp32)`` from router ``scores`` ``[N, E]``
    (already sigmoid / softmax); ``bias`` is V3's ``e_score_correction_bias``."""
    num_experts = scores.shape[-1]
    per_group = num_experts // spec.n_group
    if spec.method == "noaux_tc":
        if bias is None:
            raise ValueError("noaux_tc routing needs e_score_correction_bias")
        choice = scores + bias
        group_scores = choice.view(-1, spec.n_group, per_group).topk(2, dim=-1)[0].sum(dim=-1)
        choice = choice.masked_fill(~_group_mask(group_scores, spec, num_experts), spec.mask_value)
        ids = torch.topk(choice, k=spec.top_k, dim=-1, sorted=False)[1]
        weights = scores.gather(1, ids)
        if spec.norm_topk_prob:
            weights = weights / (weights.sum(dim=-1, keepdim=True) + 1e-20)
        return ids, weights * spec.scaling
    if spec.method == "group_limited_greedy":
        group_scores = scores.view(-1, spec.n_group, per_group).max(dim=-1).values
        masked = scores.masked_fill(~_group_mask(group_scores, spec, num_experts), 0.0)
        weights, ids = torch.topk(masked, k=spec.top_k, dim=-1, sorted=False)
    else:
        weights, ids = torch.topk(scores, k=spec.top_k, dim=-1, sorted=False)
    if spec.norm_topk_prob and spec.top_k > 1:  # V2: normalised weights are not rescaled
        return ids, weights / (weights.sum(dim=-1, keepdim=True) + 1e-20)
    return ids, weights * spec.scaling
