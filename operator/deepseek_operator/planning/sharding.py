"""Candidate shardings of one replica on one GPU pool, smallest first.

Rules (vLLM's, which the native runtime follows):

* tensor (TP) divides the attention head count (and, for GQA, the KV heads divide TP or
  TP divides them) and fits in one node;
* pipeline (PP) = nodes per replica; a replica spanning nodes takes whole nodes, so its
  TP × data is the largest valid degree that fits a node;
* expert (EP) spans tensor × data GPUs when on, and must divide the routed experts.

Explicit degrees in ``spec.parallelism`` are honoured or rejected with the reason.
Pure; called by the planner.
"""

from __future__ import annotations

from collections.abc import Iterator

from deepseek_operator.api.placement import ParallelismSpec
from deepseek_operator.planning.architecture import ModelArchitecture
from deepseek_operator.planning.memory import Sharding
from deepseek_operator.planning.plan import PlanningError

MAX_PIPELINE = 64


def valid_tensor_degrees(arch: ModelArchitecture, limit: int) -> list[int]:
    """Tensor degrees up to ``limit`` that the attention layout allows."""
    out = []
    for t in range(1, limit + 1):
        if arch.num_heads % t:
            continue
        if arch.attention == "gqa" and arch.num_kv_heads % t and t % arch.num_kv_heads:
            continue
        out.append(t)
    return out


def check_explicit(arch: ModelArchitecture, par: ParallelismSpec) -> list[str]:
    """Validate explicit degrees against the model; return reasons, raise when impossible."""
    reasons: list[str] = []
    if par.tensor is not None:
        if par.tensor not in valid_tensor_degrees(arch, par.tensor):
            options = ", ".join(str(t) for t in valid_tensor_degrees(arch, 16))
            raise PlanningError(
                f"parallelism.tensor {par.tensor} does not divide the {arch.num_heads} attention "
                f"heads of {arch.name}"
                + (f" (and its {arch.num_kv_heads} KV heads)" if arch.attention == "gqa" else "")
                + f"; use one of {options}, or omit it to let the planner choose",
                field="spec.parallelism.tensor",
            )
        reasons.append(f"tensor {par.tensor}: set in spec, divides {arch.num_heads} heads")
    if par.pipeline is not None:
        if par.pipeline > arch.num_layers:
            raise PlanningError(
                f"parallelism.pipeline {par.pipeline} exceeds the {arch.num_layers} layers of "
                f"{arch.name}; use at most {arch.num_layers}",
                field="spec.parallelism.pipeline",
            )
        reasons.append(f"pipeline {par.pipeline}: set in spec")
    if par.expert is not None and par.expert > 1:
        if not arch.is_moe:
            raise PlanningError(
                f"parallelism.expert {par.expert}: {arch.name} is a dense model without routed "
                "experts; remove parallelism.expert or set it to 1",
                field="spec.parallelism.expert",
            )
        if arch.n_routed_experts % par.expert:
            raise PlanningError(
                f"parallelism.expert {par.expert} does not divide the {arch.n_routed_experts} "
                f"routed experts of {arch.name}",
                field="spec.parallelism.expert",
            )
    return reasons


def _expert_degree(arch: ModelArchitecture, par: ParallelismSpec, tp: int) -> int | None:
    """EP for a given TP (None: this TP is incompatible with an explicit EP)."""
    span = tp * par.data
    if par.expert is not None:
        return par.expert if par.expert in (1, span) else None
    if arch.is_moe and span > 1 and arch.n_routed_experts % span == 0:
        return span
    return 1


def candidates(
    arch: ModelArchitecture, par: ParallelismSpec, gpus_per_node: int, max_nodes: int
) -> Iterator[Sharding]:
    """Shardings that fit the node shape, ordered by nodes, then GPUs, then TP.

    ``max_nodes`` bounds the pipeline degree (pass a large number to ask "how many nodes
    would it take").
    """
    tps = valid_tensor_degrees(arch, gpus_per_node // par.data)
    if par.tensor is not None:
        tps = [t for t in tps if t == par.tensor]
    if not tps:
        return
    top = min(MAX_PIPELINE, arch.num_layers, max_nodes)
    pps = [par.pipeline] if par.pipeline is not None else list(range(1, top + 1))
    for pp in pps:
        options = tps if pp == 1 else tps[-1:]  # multi-node replicas take whole nodes
        for tp in options:
            ep = _expert_degree(arch, par, tp)
            if ep is not None:
                yield Sharding(tensor=tp, pipeline=pp, expert=ep, data=par.data)
