"""Which GPU nodes a spec may use: product, memory, node selector, taints, schedulability.

Pure helpers for the planner; the renderer reuses :data:`GPU_TOLERATION` so the pods
tolerate exactly what the planner assumed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from deepseek_operator.api.placement import PlacementSpec, Toleration
from deepseek_operator.planning.inventory import GpuInventory, GpuNode, Taint, product_matches

GPU_TOLERATION: Final = Toleration(key="nvidia.com/gpu", operator="Exists", effect="NoSchedule")


def tolerations_of(placement: PlacementSpec) -> list[Toleration]:
    """The pods' tolerations: the GPU taint plus the spec's own."""
    return [GPU_TOLERATION, *placement.tolerations]


def tolerates(tolerations: list[Toleration], taint: Taint) -> bool:
    """True when one toleration matches the taint (core/v1 semantics)."""
    if taint.effect == "PreferNoSchedule":
        return True
    for tol in tolerations:
        if tol.effect is not None and tol.effect != taint.effect:
            continue
        if tol.key is None or tol.key == "":
            if tol.operator == "Exists":
                return True
            continue
        if tol.key != taint.key:
            continue
        if tol.operator == "Exists" or (tol.value or "") == taint.value:
            return True
    return False


@dataclass(frozen=True, slots=True)
class Eligibility:
    """Nodes a spec may use, and the reasons others were excluded."""

    nodes: tuple[GpuNode, ...]
    excluded: tuple[str, ...]


def eligible_nodes(inventory: GpuInventory, placement: PlacementSpec) -> Eligibility:
    """Filter the inventory by the spec's placement; explain each exclusion (grouped)."""
    tolerations = tolerations_of(placement)
    wanted = placement.gpu.products
    min_mib = (placement.gpu.min_memory_gib or 0) * 1024
    kept: list[GpuNode] = []
    excluded: dict[str, list[str]] = {}

    def drop(reason: str, node: GpuNode, label: str | None = None) -> None:
        excluded.setdefault(reason, []).append(label or node.name)

    for node in inventory.nodes:
        if wanted and not any(product_matches(w, node.product) for w in wanted):
            drop(f"product not in placement.gpu.products {wanted}", node, node.product)
        elif node.memory_mib < min_mib:
            drop(f"{node.memory_mib // 1024} GiB GPUs below placement.gpu.minMemoryGiB", node)
        elif any(node.labels.get(k) != v for k, v in placement.node_selector.items()):
            drop("labels do not match placement.nodeSelector", node)
        elif not node.schedulable:
            drop("cordoned or not Ready", node)
        elif untolerated := [
            t
            for t in node.taints
            if t.effect in ("NoSchedule", "NoExecute") and not tolerates(tolerations, t)
        ]:
            drop(
                f"taint {untolerated[0].key}={untolerated[0].value}:{untolerated[0].effect} "
                "not tolerated",
                node,
            )
        else:
            kept.append(node)
    notes = []
    for reason, labels in excluded.items():
        shown = list(dict.fromkeys(labels))  # products repeat per node: show each once
        notes.append(
            f"{len(labels)} node(s) excluded: {reason} ({', '.join(shown[:4])}"
            f"{', …' if len(shown) > 4 else ''})"
        )
    return Eligibility(tuple(kept), tuple(notes))
