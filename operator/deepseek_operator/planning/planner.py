"""The sharding planner: (spec, GPU inventory, model shape) -> :class:`Plan`, with reasons.

For every eligible pool it walks the candidate shardings smallest first (one node with
the smallest tensor degree, then whole nodes with growing pipeline degree) and keeps the
first whose busiest GPU holds its weights, the runtime overhead and a KV cache for
``maxModelLen × kvCache.minSequences`` tokens. Among pools it picks the best fit: fewest
GPUs per replica, then fewest nodes, then the least capable product (see
``docs/planner.md``). Assembling the plan and its explanations lives in :mod:`.explain`.

Pure, no I/O: called by the controller on every reconcile, the CLI and the table tests.
"""

from __future__ import annotations

from typing import Any, Literal

from deepseek_operator.api.spec import DeepSeekDeploymentSpec
from deepseek_operator.planning import catalog
from deepseek_operator.planning.architecture import ModelArchitecture, architecture_from_config
from deepseek_operator.planning.explain import (
    Fit,
    describe_architecture,
    make_plan,
    no_pool_error,
    nodes_text,
)
from deepseek_operator.planning.inventory import (
    GpuInventory,
    GpuPool,
    product_tier,
)
from deepseek_operator.planning.memory import (
    MIB,
    GpuMemory,
    Sharding,
    WeightFormat,
    checkpoint_bytes,
    gpu_memory,
    human_bytes,
)
from deepseek_operator.planning.placement import eligible_nodes
from deepseek_operator.planning.plan import Plan, PlanningError
from deepseek_operator.planning.sharding import candidates, check_explicit


def resolve_architecture(
    spec: DeepSeekDeploymentSpec, model_config: dict[str, Any] | None
) -> ModelArchitecture:
    """The model's shape: ``config.json`` when given, else the catalog by name or source."""
    m = spec.model
    if model_config is not None:
        try:
            return architecture_from_config(model_config, name=m.architecture or m.name)
        except ValueError as err:
            raise PlanningError(str(err), field="spec.model.configRef") from err
    arch = catalog.lookup(m.architecture, m.name, m.source.uri)
    if arch is None:
        known = ", ".join(catalog.catalog_names())
        raise PlanningError(
            f"model {m.name!r} is not in the built-in catalog; set spec.model.architecture to "
            f"one of {known}, or spec.model.configRef to a ConfigMap holding its config.json",
            field="spec.model",
        )
    return arch


def weight_format(spec: DeepSeekDeploymentSpec, arch: ModelArchitecture) -> WeightFormat:
    """The format weights take in GPU memory."""
    q = spec.model.quantization
    if q == "auto":
        return arch.native_dtype
    return "bf16" if q == "none" else q


def plan_deployment(
    spec: DeepSeekDeploymentSpec,
    inventory: GpuInventory,
    model_config: dict[str, Any] | None = None,
) -> Plan:
    """Plan one replica's sharding and GPU pool.

    Args:
        spec: the DSD spec.
        inventory: GPU nodes of the cluster (:func:`inventory_from_nodes`).
        model_config: the checkpoint's ``config.json``, for models outside the catalog.

    Raises:
        PlanningError: when no pool can hold the model; the message says why and what fits.
    """
    arch = resolve_architecture(spec, model_config)
    fmt = weight_format(spec, arch)
    kv_dtype: Literal["bf16", "fp8"] = "fp8" if spec.engine.kv_cache.dtype == "fp8" else "bf16"
    kv_width = 1 if kv_dtype == "fp8" else 2
    max_len, min_seqs = spec.model.max_model_len, spec.engine.kv_cache.min_sequences
    total = checkpoint_bytes(arch, fmt)
    reasons = [describe_architecture(arch)]
    origin = "checkpoint format" if spec.model.quantization == "auto" else "spec.model.quantization"
    reasons.append(f"weights: {fmt} ({origin}) = {human_bytes(total)}")
    if max_len > arch.max_position_embeddings:
        raise PlanningError(
            f"model.maxModelLen {max_len} exceeds the {arch.max_position_embeddings} positions "
            f"{arch.name} supports; lower it",
            reasons,
            field="spec.model.maxModelLen",
        )
    reasons += check_explicit(arch, spec.parallelism)

    eligible = eligible_nodes(inventory, spec.placement)
    reasons += list(eligible.excluded)
    pools = inventory.pools(eligible.nodes)
    if not pools:
        raise no_pool_error(spec, inventory, eligible.excluded, reasons)
    reasons.append("eligible pools: " + "; ".join(p.describe() for p in pools))

    def measure(pool: GpuPool, s: Sharding) -> GpuMemory:
        e = spec.engine
        return gpu_memory(
            arch,
            fmt,
            s,
            gpu_memory_bytes=pool.memory_mib * MIB,
            utilization=e.gpu_memory_utilization,
            kv_dtype_bytes=kv_width,
            batched_tokens=e.max_num_batched_tokens,
            max_seqs=e.max_num_seqs,
        )

    need_tokens = max_len * min_seqs
    max_gpus = spec.placement.gpu.max_gpus_per_replica
    fits: list[Fit] = []
    failures: list[str] = []
    for pool in pools:
        fit, why = _first_fit(
            arch, spec, pool, measure=measure, need_tokens=need_tokens, max_gpus=max_gpus
        )
        if fit is not None:
            fits.append(fit)
            if why:
                reasons.append(f"{pool.product}: {why}")
            reasons.append(
                f"{pool.product}: fits as TP{fit.sharding.tensor}×PP"
                f"{fit.sharding.pipeline} on {nodes_text(fit.sharding.pipeline)} "
                f"({fit.sharding.gpus} GPU{'s' if fit.sharding.gpus > 1 else ''})"
            )
        else:
            failures.append(f"{pool.describe()}: {why}")
            reasons.append(f"{pool.product}: {why}")
    if not fits:
        raise PlanningError(
            f"{arch.name} does not fit: weights need {human_bytes(total)} ({fmt}) plus "
            f"{human_bytes(need_tokens * _kv_full(arch, kv_width))} of KV cache for {min_seqs} × "
            f"{max_len} tokens per replica. "
            + "; ".join(failures)
            + ". To fit: add such nodes, lower model.maxModelLen or "
            "engine.kvCache.minSequences, or quantize (model.quantization int4, "
            "engine.kvCache.dtype fp8).",
            reasons,
            field="spec.placement",
        )
    best = min(
        fits,
        key=lambda f: (
            f.sharding.gpus,
            f.sharding.pipeline,
            product_tier(f.pool.product),
            f.pool.memory_mib,
            f.pool.product,
        ),
    )
    if len(fits) > 1:
        reasons.append(
            f"chose {best.pool.product}: fewest GPUs per replica, then fewest nodes, "
            "then the least capable product (bigger GPUs stay free for bigger models)"
        )
    return make_plan(
        arch, best, fmt=fmt, kv_dtype=kv_dtype, total=total, max_len=max_len, reasons=reasons
    )


def _kv_full(arch: ModelArchitecture, width: int) -> int:
    return arch.kv_elements_per_token_layer(1) * arch.num_layers * width


def _first_fit(
    arch: ModelArchitecture,
    spec: DeepSeekDeploymentSpec,
    pool: GpuPool,
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
            if s.pipeline > nodes and measure(pool, s).max_tokens >= need_tokens
        ),
        None,
    )
    hint = f"; it would fit on {wider.pipeline} such nodes" if wider else ""
    return None, f"largest try {last}{hint}"
