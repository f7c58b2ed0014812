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
from deepseek_operator.planning.engines import (
    ENGINES,
    NATIVE,
    NATIVE_AUTO,
    VLLM,
    EngineCapabilities,
    limits_text,
    unsupported,
    unsupported_parallelism,
)
from deepseek_operator.planning.explain import (
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
from deepseek_operator.planning.search import SearchResult, search_pools
from deepseek_operator.planning.sharding import check_explicit


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

    def search(caps: EngineCapabilities) -> SearchResult:
        return search_pools(arch, spec, pools, caps, measure=measure, need_tokens=need_tokens)

    def no_fit(result: SearchResult) -> PlanningError:
        return PlanningError(
            f"{arch.name} does not fit: weights need {human_bytes(total)} ({fmt}) plus "
            f"{human_bytes(need_tokens * _kv_full(arch, kv_width))} of KV cache for {min_seqs} × "
            f"{max_len} tokens per replica. "
            + "; ".join(result.failures)
            + ". To fit: add such nodes, lower model.maxModelLen or "
            "engine.kvCache.minSequences, or quantize (model.quantization int4, "
            "engine.kvCache.dtype fp8).",
            reasons + result.notes,
            field="spec.placement",
        )

    static = _static_check(arch, spec, NATIVE_AUTO)
    kind = spec.engine.kind
    if kind == "auto":
        native = search(NATIVE_AUTO) if static is None else None
        if native is not None and native.fits:
            caps, result = NATIVE, native
            reasons.append(
                f"engine native (engine.kind auto): it serves {arch.model_type} in {fmt} "
                "on one GPU per replica"
            )
        else:
            problem = _static_check(arch, spec, VLLM)
            if problem is not None:
                raise PlanningError(f"no engine serves this: {problem[1]}", reasons, problem[0])
            caps, result = VLLM, search(VLLM)
            why = static[1] if static else _native_miss(arch, result)
            reasons.append(f"engine vllm (engine.kind auto): {why}")
    else:
        caps = ENGINES[kind]
        problem = _static_check(arch, spec, caps)
        if problem is not None:
            raise PlanningError(
                f"engine.kind {kind}: {problem[1]}; use engine.kind auto or vllm, or change "
                f"{problem[0]}",
                reasons,
                field=problem[0],
            )
        result = search(caps)
        if not result.fits and caps.one_gpu_only:
            wider = search(VLLM)
            if wider.fits:
                raise PlanningError(
                    f"engine.kind {kind}: {_native_miss(arch, wider)}; use engine.kind "
                    "auto or vllm, or a smaller model (or model.quantization int4)",
                    reasons + result.notes,
                    field="spec.engine.kind",
                )
        reasons.append(f"engine {kind}: set in spec.engine.kind")
    if not result.fits:
        raise no_fit(result)
    reasons += result.notes
    best = min(
        result.fits,
        key=lambda f: (
            f.sharding.gpus,
            f.sharding.pipeline,
            product_tier(f.pool.product),
            f.pool.memory_mib,
            f.pool.product,
        ),
    )
    if len(result.fits) > 1:
        reasons.append(
            f"chose {best.pool.product}: fewest GPUs per replica, then fewest nodes, "
            "then the least capable product (bigger GPUs stay free for bigger models)"
        )
    if best.sharding.gpus > 1 and "cuda" not in caps.parallel_verified_on:
        reasons.append(
            f"{caps.engine} on {best.sharding.gpus} GPUs: its parallel layouts were run on "
            f"{', '.join(caps.parallel_verified_on) or 'no device'} only, never over NCCL "
            "on GPUs; engine.kind auto would choose vllm here"
        )
    reasoning, tools = catalog.chat_parsers(
        spec.model.architecture, spec.model.name, spec.model.source.uri
    )
    if reasoning:
        reasons.append(
            f"reasoning parser {reasoning}: {arch.name} is an R1 model "
            "(<think>…</think> goes to reasoning_content)"
        )
    if tools:
        reasons.append(f"tool-call parser {tools}: {arch.name} emits DeepSeek-V3 tool-call tokens")
    return make_plan(
        arch, best, fmt=fmt, kv_dtype=kv_dtype, total=total, max_len=max_len, reasons=reasons
    ).model_copy(
        update={"engine": caps.engine, "reasoning_parser": reasoning, "tool_call_parser": tools}
    )


def _static_check(
    arch: ModelArchitecture, spec: DeepSeekDeploymentSpec, caps: EngineCapabilities = NATIVE
) -> tuple[str, str] | None:
    """What in the spec ``caps`` cannot serve whatever the GPUs: ``(field, why)``."""
    par = spec.parallelism
    return unsupported(
        caps,
        model_type=arch.model_type,
        quantization=spec.model.quantization,
        kv_cache_dtype=spec.engine.kv_cache.dtype,
    ) or unsupported_parallelism(caps, tensor=par.tensor, pipeline=par.pipeline, expert=par.expert)


def _native_miss(arch: ModelArchitecture, wider: SearchResult) -> str:
    """Why native cannot serve a plan that a wider engine can (or that nothing can)."""
    head = limits_text(NATIVE_AUTO)
    if NATIVE_AUTO != NATIVE:
        head += " under engine.kind auto (its multi-GPU layouts have run on CPU, not on GPUs)"
    if not wider.fits:
        return f"{head}, and {arch.name} fits no layout of the eligible pools"
    s = min(wider.fits, key=lambda f: f.sharding.gpus).sharding
    return (
        f"{head}, and {arch.name} needs TP{s.tensor}×PP{s.pipeline} "
        f"({s.gpus} GPUs on {nodes_text(s.pipeline)})"
    )


def _kv_full(arch: ModelArchitecture, width: int) -> int:
    return arch.kv_elements_per_token_layer(1) * arch.num_layers * width
