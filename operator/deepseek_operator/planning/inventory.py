"""GPU inventory: the cluster's GPU nodes grouped into pools, read from Node objects.

Reads the labels NVIDIA's GPU operator and GPU feature discovery put on nodes
(``nvidia.com/gpu.product``, ``nvidia.com/gpu.memory`` in MiB, ``nvidia.com/gpu.count``),
the allocatable ``nvidia.com/gpu`` the device plugin reports, taints, cordons and the
Ready condition. Nodes with the same product, memory and GPU count form a pool.

Pure: :func:`inventory_from_nodes` takes Node dicts (``kubectl get nodes -o json`` items);
called by the controller, the CLI and tests.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

PRODUCT_LABEL: Final = "nvidia.com/gpu.product"
MEMORY_LABEL: Final = "nvidia.com/gpu.memory"
COUNT_LABEL: Final = "nvidia.com/gpu.count"
GPU_RESOURCE: Final = "nvidia.com/gpu"
"""Extended resource of NVIDIA GPUs: planning reads it from Nodes, rendering requests it."""

# Memory (MiB) of products whose nodes lack the gpu.memory label (as nvidia-smi reports).
KNOWN_MEMORY_MIB: Final[dict[str, int]] = {
    "H200": 143771,
    "H100-80GB": 81559,
    "H100-NVL": 95830,
    "H100-PCIE": 81559,
    "A100-80GB": 81920,
    "A100-40GB": 40960,
    "A100-SXM4-40GB": 40960,
    "L40S": 46068,
    "L40": 46068,
    "L4": 23034,
    "A10G": 23028,
    "B200": 183359,
    "GH200": 97871,
}


# Product families from least to most capable; the planner prefers the least capable
# product that fits (it leaves the bigger GPUs for the models that need them).
PRODUCT_TIERS: Final = (
    "T4",
    "L4",
    "A10G",
    "A10",
    "L40",
    "L40S",
    "A100",
    "H100",
    "H800",
    "H20",
    "H200",
    "GH200",
    "B200",
    "B300",
    "GB200",
)


def product_tier(product: str) -> int:
    """Rank of a product family in :data:`PRODUCT_TIERS` (unknown products rank last)."""
    tokens = product_tokens(product)
    ranks = [i for i, family in enumerate(PRODUCT_TIERS) if family in tokens]
    return max(ranks) if ranks else len(PRODUCT_TIERS)


@dataclass(frozen=True, slots=True)
class Taint:
    """A node taint."""

    key: str
    value: str
    effect: str


@dataclass(frozen=True, slots=True)
class GpuNode:
    """One GPU node as the planner sees it."""

    name: str
    product: str
    memory_mib: int
    gpus: int
    labels: Mapping[str, str] = field(default_factory=dict)
    taints: tuple[Taint, ...] = ()
    schedulable: bool = True


@dataclass(frozen=True, slots=True)
class GpuPool:
    """Nodes of one product, GPU memory and GPU count."""

    product: str
    memory_mib: int
    gpus_per_node: int
    nodes: tuple[GpuNode, ...]

    @property
    def short_product(self) -> str:
        """``H100-80GB-HBM3`` for ``NVIDIA-H100-80GB-HBM3``."""
        return re.sub(r"^NVIDIA[- ]", "", self.product)

    def describe(self) -> str:
        """``4 nodes of 8×80 GiB NVIDIA-H100-80GB-HBM3``."""
        n = len(self.nodes)
        gib = self.memory_mib / 1024
        return (
            f"{n} node{'s' if n != 1 else ''} of {self.gpus_per_node}×{gib:.0f} GiB {self.product}"
        )


@dataclass(frozen=True, slots=True)
class GpuInventory:
    """All GPU nodes, plus notes about nodes that were skipped and why."""

    nodes: tuple[GpuNode, ...]
    notes: tuple[str, ...] = ()

    def pools(self, nodes: Iterable[GpuNode] | None = None) -> list[GpuPool]:
        """Group ``nodes`` (all by default) into pools, largest GPU memory first."""
        groups: dict[tuple[str, int, int], list[GpuNode]] = {}
        for node in self.nodes if nodes is None else nodes:
            groups.setdefault((node.product, node.memory_mib, node.gpus), []).append(node)
        pools = [
            GpuPool(p, m, g, tuple(sorted(ns, key=lambda n: n.name)))
            for (p, m, g), ns in groups.items()
        ]
        return sorted(pools, key=lambda p: (-p.memory_mib * p.gpus_per_node, p.product))


def _int(value: Any) -> int | None:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return None


def product_tokens(product: str) -> set[str]:
    """Upper-case name tokens of a product label, e.g. {NVIDIA, A100, SXM4, 80GB}."""
    return {t for t in re.split(r"[-_ ]+", product.upper()) if t}


def product_matches(wanted: str, product: str) -> bool:
    """True when every token of ``wanted`` (``A100-80GB``) is in ``product``'s tokens."""
    return product_tokens(wanted) <= product_tokens(product)


def _known_memory(product: str) -> int | None:
    for name, mib in sorted(KNOWN_MEMORY_MIB.items(), key=lambda kv: -len(kv[0])):
        if product_matches(name, product):
            return mib
    return None


def _ready(node: Mapping[str, Any]) -> bool:
    conditions = (node.get("status") or {}).get("conditions") or []
    for cond in conditions:
        if cond.get("type") == "Ready":
            return bool(cond.get("status") == "True")
    return True  # no conditions reported: trust the node (e.g. a freshly listed fake)


def gpu_node_from_object(node: Mapping[str, Any]) -> tuple[GpuNode | None, str | None]:
    """Parse one Node dict; return the GPU node, or None and why it was skipped."""
    meta = node.get("metadata") or {}
    name = str(meta.get("name", "?"))
    labels = {str(k): str(v) for k, v in (meta.get("labels") or {}).items()}
    status = node.get("status") or {}
    gpus = _int((status.get("allocatable") or {}).get(GPU_RESOURCE))
    if gpus is None:
        gpus = _int((status.get("capacity") or {}).get(GPU_RESOURCE))
    if not gpus:
        return None, None  # not a GPU node: no note
    product = labels.get(PRODUCT_LABEL)
    if not product:
        return None, f"node {name}: {gpus} GPUs but no {PRODUCT_LABEL} label; skipped"
    memory = _int(labels.get(MEMORY_LABEL)) or _known_memory(product)
    if not memory:
        return None, f"node {name}: no {MEMORY_LABEL} label and unknown product {product}"
    spec = node.get("spec") or {}
    taints = tuple(
        Taint(str(t.get("key", "")), str(t.get("value", "")), str(t.get("effect", "")))
        for t in spec.get("taints") or []
    )
    schedulable = not spec.get("unschedulable", False) and _ready(node)
    return GpuNode(name, product, memory, gpus, labels, taints, schedulable), None


def inventory_from_nodes(nodes: Iterable[Mapping[str, Any]]) -> GpuInventory:
    """Build the GPU inventory from Node objects (dicts as the API returns them)."""
    parsed: list[GpuNode] = []
    notes: list[str] = []
    for obj in nodes:
        node, note = gpu_node_from_object(obj)
        if node is not None:
            parsed.append(node)
        if note:
            notes.append(note)
    return GpuInventory(tuple(sorted(parsed, key=lambda n: n.name)), tuple(notes))
