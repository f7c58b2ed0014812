"""The search of one engine over the GPU pools: every pool's smallest sharding that fits.

For each eligible pool it walks the candidate shardings smallest first (one node with the
smallest tensor degree, then whole nodes with growing pipeline degree), skips those the
engine cannot run (:meth:`EngineCapabilities.admits`) and keeps the first whose busiest
GPU holds its weights, the runtime overhead and a KV cache for ``maxModelLen ×
kvCache.minSequences`` tokens, else says why none does.

Pure; called by :mod:`.planner`, which picks the engine and the best pool.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from deepseek_operator.api.spec import DeepSeekDeploymentSpec
from deepseek_operator.planning.architecture import ModelArchitecture
from deepseek_operator.planning.engines import EngineCapabilities
from deepseek_operator.planning.explain import Fit, nodes_text
from deepseek_operator.planning.inventory import GpuPool
from deepseek_operator.planning.memory import GpuMemory, human_bytes
from deepseek_operator.planning.sharding import candidates


@dataclass(frozen=True, slots=True)
class SearchResult:
    """What one engine's search over the pools found."""

    fits: list[Fit]
    failures: list[str]
    """``pool: why it does not fit``, for the error message."""
    notes: list[str]
    """Reasons lines, one or two per pool."""


def search_pools(
    arch: ModelArchitecture,
    spec: DeepSeekDeploymentSpec,
    pools: list[GpuPool],
    caps: EngineCapabilities,
    *,
    measure: Any,
    need_tokens: int,
) -> SearchResult:
    out = SearchResult([], [], [])
    for pool in pools:
        fit, why = first_fit(
            arch,
            spec,
            pool,
            caps,
            measure=measure,
            need_tokens=need_tokens,
            max_gpus=spec.placement.gpu.max_gpus_per_replica,
        )
        if fit is not None:
            out.fits.append(fit)
            if why:
                out.notes.append(f"{pool.product}: {why}")
            out.notes.append(
                f"{pool.product}: fits as TP{fit.sharding.tensor}×PP"
                f"{fit.sharding.pipeline} on {nodes_text(fit.sharding.pipeline)} "
                f"({fit.sharding.gpus} GPU{'s' if fit.sharding.gpus > 1 else ''})"
            )
        else:
            out.failures.append(f"{pool.describe()}: {why}")
            out.notes.append(f"{pool.product}: {why}")
    return out


def first_fit(
    arch: ModelArchitecture,
    spec: DeepSeekDeploymentSpec,
    pool: GpuPool,
    caps: EngineCapabilities,
    *,
    measure: Any,
    need_tokens: int,
    max_gpus: int | None,
) -> tuple[Fit | None, str]:
    """The smallest sharding of ``pool`` that holds the model, else why none does."""
    nodes = len(pool.nodes)
    par = spec.parallelism
    if par.tensor is not None and par.tensor * par.data > pool.gpus_per_node:
        return None, (
            f"parallelism.tensor {par.tensor} × data {par.data} exceeds the "
            f"{pool.gpus_per_node} GPUs of a node (tensor parallelism stays within a node); "
            f"use tensor ≤ {pool.gpus_per_node // par.data} and let pipeline span nodes"
        )
    last = ""
    for s in candidates(arch, spec.parallelism, pool.gpus_per_node, nodes):
        if not caps.admits(s, s.pipeline):
            continue
        mem: GpuMemory = measure(pool, s)
        label = f"TP{s.tensor}×PP{s.pipeline}"
        if max_gpus is not None and s.gpus > max_gpus:
            return None, (
                f"needs more than placement.gpu.maxGpusPerReplica {max_gpus} GPUs "
                f"({label} = {s.gpus} GPUs)"
            )
        if s.pipeline > nodes:
            return None, f"{label} needs {s.pipeline} nodes; the pool has {nodes}"
        if mem.kv_budget <= 0:
            last = (
                f"{label}: weights {human_bytes(mem.weights)}/GPU + overhead "
                f"{human_bytes(mem.overhead)} exceed {human_bytes(mem.usable)} usable"
            )
            continue
        if mem.max_tokens < need_tokens:
            last = f"{label}: KV cache holds {mem.max_tokens} tokens, {need_tokens} needed"
            continue
        return Fit(pool, s, mem), (f"smaller shardings fail ({last})" if last else "")
    last = last or "no tensor degree divides the heads and fits its nodes"
    wider = next(
        (
            s
            for s in candidates(arch, spec.parallelism, pool.gpus_per_node, 10**6)
            if s.pipeline > nodes
            and caps.admits(s, s.pipeline)
            and measure(pool, s).max_tokens >= need_tokens
        ),
        None,
    )
    hint = f"; it would fit on {wider.pipeline} such nodes" if wider else ""
    return None, f"largest try {last}{hint}"
