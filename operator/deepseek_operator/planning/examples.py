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
plan`` without ``--nodes`` answers what the demo cluster will. Pure data; also used by tests,
with :func:`example_model_config` (a model outside the catalog, for ``configRef``).
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


def example_model_config(**overrides: Any) -> dict[str, Any]:
    """``config.json`` of a small Llama-shaped model the catalog does not know.

    What a ``spec.model.configRef`` ConfigMap (or ``--model-config``) holds; it plans onto
    one L40S. ``overrides`` replace fields, e.g. ``num_hidden_layers=32`` for a larger one.
    """
    return {
        "model_type": "llama",
        "num_hidden_layers": 4,
        "hidden_size": 256,
        "num_attention_heads": 4,
        "vocab_size": 1000,
        "max_position_embeddings": 4096,
        **overrides,
    }
