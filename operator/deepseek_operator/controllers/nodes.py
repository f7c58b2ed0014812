"""GPU-relevant projection of Node objects and an inventory fingerprint (pure).

The node index in :mod:`.handlers` keeps only what planning reads (labels,
taints, schedulability, allocatable/capacity, the Ready condition), so 500 nodes
cost little memory and heartbeat-only updates do not change the fingerprint.  The
per-DSD timer re-plans only when :func:`fingerprint` of the index changes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

from deepseek_operator.planning.inventory import GPU_RESOURCE


def project_node(node: dict[str, Any]) -> dict[str, Any]:
    """Keep the fields of a Node that the planner reads; drop heartbeats."""
    meta = node.get("metadata") or {}
    spec = node.get("spec") or {}
    st = node.get("status") or {}
    ready = [
        {"type": c.get("type"), "status": c.get("status")}
        for c in st.get("conditions") or []
        if c.get("type") == "Ready"
    ]
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": meta.get("name", ""),
            "labels": dict(meta.get("labels") or {}),
            "annotations": {},
        },
        "spec": {
            "taints": [
                dict(t)
                for t in spec.get("taints") or []
                if t.get("key")
                not in {"node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"}
            ],
            "unschedulable": bool(spec.get("unschedulable", False)),
        },
        "status": {
            "allocatable": dict(st.get("allocatable") or {}),
            "capacity": dict(st.get("capacity") or {}),
            "conditions": ready,
        },
    }


def is_gpu_node(node: dict[str, Any]) -> bool:
    """True when the node offers (or is labelled to offer) NVIDIA GPUs."""
    st = node.get("status") or {}
    labels = (node.get("metadata") or {}).get("labels") or {}
    return (
        GPU_RESOURCE in (st.get("allocatable") or {})
        or GPU_RESOURCE in (st.get("capacity") or {})
        or any(k.startswith("nvidia.com/gpu") for k in labels)
    )


def fingerprint(nodes: Iterable[dict[str, Any]]) -> str:
    """A digest of the GPU nodes' planning-relevant fields, order-independent."""
    gpu = sorted(
        (json.dumps(n, sort_keys=True) for n in nodes if is_gpu_node(n)),
    )
    return hashlib.sha256("\n".join(gpu).encode()).hexdigest()[:16]
