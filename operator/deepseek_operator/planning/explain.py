"""Plan assembly and explanations: the reasons text and the no-pool error.

Split from :mod:`.planner` (which searches) so the search stays short; pure, called only
by the planner.
"""

from __future__ import annotations

from dataclasses import dataclass

from deepseek_operator.api.spec import DeepSeekDeploymentSpec
from deepseek_operator.planning.architecture import ModelArchitecture
from deepseek_operator.planning.inventory import PRODUCT_LABEL, GpuInventory, GpuPool
from deepseek_operator.planning.memory import GpuMemory, Sharding, human_bytes
from deepseek_operator.planning.plan import Plan, PlanningError


@dataclass(frozen=True, slots=True)
class Fit:
    """A sharding of a pool that holds the model, with its memory use."""

    pool: GpuPool
    sharding: Sharding
    memory: GpuMemory


def pool_capacity(pool: GpuPool, s: Sharding) -> int:
    per_stage = s.tensor * s.data
    nodes = sum(1 for n in pool.nodes if n.gpus >= per_stage)
    return nodes // s.pipeline if s.pipeline > 1 else nodes * (pool.gpus_per_node // per_stage)


def describe_architecture(arch: ModelArchitecture) -> str:
    attn = (
        f"MLA latent {arch.kv_lora_rank}+{arch.qk_rope_head_dim}"
        if arch.attention == "mla"
        else f"GQA {arch.num_kv_heads} KV heads × {arch.head_dim}"
    )
    moe = (
        f", {arch.n_routed_experts} routed experts (top-{arch.experts_per_token})"
        if arch.is_moe
        else ""
    )
    return (
        f"model {arch.name}: {arch.total_params / 1e9:.1f}B parameters "
        f"({arch.active_params / 1e9:.1f}B active), {arch.num_layers} layers, "
        f"{arch.num_heads} attention heads, {attn}{moe}"
    )


def nodes_text(n: int) -> str:
    return f"{n} node{'s' if n != 1 else ''}"


def make_plan(
    arch: ModelArchitecture,
    fit: Fit,
    *,
    fmt: str,
    kv_dtype: str,
    total: int,
    max_len: int,
    reasons: list[str],
) -> Plan:
    s, mem, pool = fit.sharding, fit.memory, fit.pool
    if s.pipeline == 1:
        reasons.append(
            f"tensor {s.tensor}: smallest degree dividing {arch.num_heads} heads "
            "that holds weights and KV cache on one node"
        )
    else:
        reasons.append(
            f"pipeline {s.pipeline}: one node is not enough; the replica spans "
            f"{s.pipeline} whole nodes, tensor {s.tensor} within each"
        )
    if s.expert > 1:
        reasons.append(
            f"expert {s.expert}: {arch.n_routed_experts} routed experts spread over "
            f"tensor × data = {s.expert} GPUs (expert parallelism)"
        )
    kv_bytes = max(0, mem.kv_budget)
    reasons.append(
        f"per GPU: weights {human_bytes(mem.weights)}, overhead "
        f"{human_bytes(mem.overhead)}, KV cache {human_bytes(kv_bytes)} of "
        f"{human_bytes(mem.usable)} usable → {mem.max_tokens} tokens "
        f"({mem.max_tokens // max_len} sequences of {max_len})"
    )
    capacity = pool_capacity(pool, s)
    reasons.append(
        f"pool capacity: {capacity} replica{'s' if capacity != 1 else ''} on "
        f"{nodes_text(len(pool.nodes))}"
    )
    return Plan(
        model_name=arch.name,
        quantization=fmt,
        kv_cache_dtype=kv_dtype,
        gpu_product=pool.product,
        gpu_memory_mib=pool.memory_mib,
        gpus_per_node=pool.gpus_per_node,
        gpus_per_replica=s.gpus,
        nodes_per_replica=s.pipeline,
        tensor=s.tensor,
        pipeline=s.pipeline,
        expert=s.expert,
        data=s.data,
        weight_bytes_per_gpu=mem.weights,
        kv_cache_bytes_per_gpu=kv_bytes,
        kv_bytes_per_token=mem.kv_bytes_per_token,
        max_tokens_in_cache=mem.max_tokens,
        max_full_length_sequences=mem.max_tokens // max_len,
        checkpoint_bytes=total,
        node_selector={PRODUCT_LABEL: pool.product},
        replica_capacity=capacity,
        reasons=reasons,
    )


def no_pool_error(
    spec: DeepSeekDeploymentSpec,
    inventory: GpuInventory,
    excluded: tuple[str, ...],
    reasons: list[str],
) -> PlanningError:
    present = "; ".join(p.describe() for p in inventory.pools()) or "no GPU nodes at all"
    wanted = spec.placement.gpu.products
    if wanted:
        msg = (
            f"no schedulable GPU node matches placement.gpu.products {wanted}; the cluster "
            f"has {present}"
        )
        field = "spec.placement.gpu.products"
    else:
        msg = f"no schedulable GPU node is eligible; the cluster has {present}"
        field = "spec.placement"
    if excluded:
        msg += ". Excluded: " + "; ".join(excluded)
    return PlanningError(msg, reasons, field=field)
