"""A built-in example GPU inventory, used by the CLI when ``--nodes`` is not given.

Pools (labels as NVIDIA GPU feature discovery sets them, every node tainted
``nvidia.com/gpu=present:NoSchedule``):

=================  ======  ==========  =========================
pool               nodes   GPUs/node   nvidia.com/gpu.product
=================  ======  ==========  =========================
h100               4       8 × 80 GB   NVIDIA-H100-80GB-HBM3
h200               4       8 × 141 GB  NVIDIA-H200
a100               4       8 × 80 GB   NVIDIA-A100-SXM4-80GB
l40s               4       4 × 48 GB   NVIDIA-L40S
=================  ======  ==========  =========================

The same pools as the local control plane's ``e2e/pools.yaml``, so ``deepseek-operator
plan`` without ``--nodes`` answers what the demo cluster will. Pure data; also used by tests.
"""

from __future__ import annotations

from typing import Any, Final

EXAMPLE_POOLS: Final = (
    ("h100", 4, 8, "NVIDIA-H100-80GB-HBM3", 81559),
    ("h200", 4, 8, "NVIDIA-H200", 143771),
    ("a100", 4, 8, "NVIDIA-A100-SXM4-80GB", 81920),
    ("l40s", 4, 4, "NVIDIA-L40S", 46068),
)


def gpu_node(
    name: str,
    product: str,
    memory_mib: int,
    gpus: int,
    *,
    taint: bool = True,
    pool: str | None = None,
) -> dict[str, Any]:
    """A Node dict shaped like ``kubectl get node -o json`` for a GPU node."""
    labels = {
        "kubernetes.io/hostname": name,
        "nvidia.com/gpu.product": product,
        "nvidia.com/gpu.memory": str(memory_mib),
        "nvidia.com/gpu.count": str(gpus),
        "nvidia.com/gpu.present": "true",
    }
    if pool:
        labels["deepseek.ai/pool"] = pool
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels},
        "spec": {"taints": [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]}
        if taint
        else {},
        "status": {
            "capacity": {"cpu": "192", "memory": "2Ti", "nvidia.com/gpu": str(gpus)},
            "allocatable": {"cpu": "190", "memory": "1980Gi", "nvidia.com/gpu": str(gpus)},
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def example_nodes(pools: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
    """Node dicts of the example inventory, optionally only the named pools."""
    return [
        gpu_node(f"gpu-{pool}-{i}", product, mib, gpus, pool=pool)
        for pool, count, gpus, product, mib in EXAMPLE_POOLS
        if pools is None or pool in pools
        for i in range(count)
    ]
