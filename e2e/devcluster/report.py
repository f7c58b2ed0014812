"""Summaries of the cluster's nodes grouped by GPU pool (``python -m e2e.devcluster nodes``).

:func:`summarize_nodes` is pure (Node JSON in, rows out) so it is unit-testable;
:func:`format_table` renders the rows as a fixed-width table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from e2e.devcluster.pools import GPU_RESOURCE, POOL_LABEL


@dataclass(frozen=True)
class PoolRow:
    """One line of the table: a pool and its aggregated nodes."""

    pool: str
    product: str
    gpus_per_node: int
    gpu_memory_mib: int
    nodes: int
    ready: int
    allocatable_gpus: int
    cpu_per_node: str
    memory_per_node: str


def _ready(node: dict[str, Any]) -> bool:
    conditions = node.get("status", {}).get("conditions", [])
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def summarize_nodes(nodes: list[dict[str, Any]]) -> list[PoolRow]:
    """Aggregate Node objects by their pool label (nodes without one go to ``-``)."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for node in nodes:
        pool = node["metadata"].get("labels", {}).get(POOL_LABEL, "-")
        groups.setdefault(pool, []).append(node)
    rows = []
    for pool, members in groups.items():
        first = members[0]
        labels = first["metadata"].get("labels", {})
        alloc = first.get("status", {}).get("allocatable", {})
        rows.append(
            PoolRow(
                pool=pool,
                product=labels.get("nvidia.com/gpu.product", "(cpu only)"),
                gpus_per_node=int(labels.get("nvidia.com/gpu.count", "0")),
                gpu_memory_mib=int(labels.get("nvidia.com/gpu.memory", "0")),
                nodes=len(members),
                ready=sum(1 for n in members if _ready(n)),
                allocatable_gpus=sum(
                    int(n.get("status", {}).get("allocatable", {}).get(GPU_RESOURCE, "0"))
                    for n in members
                ),
                cpu_per_node=str(alloc.get("cpu", "?")),
                memory_per_node=str(alloc.get("memory", "?")),
            )
        )
    return sorted(rows, key=lambda r: (r.gpus_per_node == 0, r.pool))


_HEADERS = (
    "POOL",
    "PRODUCT",
    "GPUS/NODE",
    "GPU MEM (MiB)",
    "NODES",
    "READY",
    "ALLOC GPUS",
    "CPU/NODE",
    "MEM/NODE",
)


def format_table(rows: list[PoolRow]) -> str:
    """Fixed-width table with a totals line."""
    cells = [
        (
            r.pool,
            r.product,
            str(r.gpus_per_node),
            str(r.gpu_memory_mib),
            str(r.nodes),
            str(r.ready),
            str(r.allocatable_gpus),
            r.cpu_per_node,
            r.memory_per_node,
        )
        for r in rows
    ]
    total = (
        "TOTAL",
        "",
        "",
        "",
        str(sum(r.nodes for r in rows)),
        str(sum(r.ready for r in rows)),
        str(sum(r.allocatable_gpus for r in rows)),
        "",
        "",
    )
    table = [_HEADERS, *cells, total]
    widths = [max(len(row[i]) for row in table) for i in range(len(_HEADERS))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in table
    )
