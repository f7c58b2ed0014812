"""The child kinds the controller manages, and the labels that mark its children (pure).

Read by :mod:`.reconcile` (prune and workload lists), :mod:`.handlers` (watches)
and :mod:`.rbac` (so RBAC lists exactly these kinds). The label names themselves are
defined once, by the renderer that puts them on the children (:mod:`..render.common`).
"""

from __future__ import annotations

from typing import Any

from deepseek_operator.api import GROUP, KIND
from deepseek_operator.render import LABEL_INSTANCE, LABEL_MANAGED_BY, MANAGED_BY

WORKLOAD_KINDS: tuple[tuple[str, str], ...] = (
    ("apps/v1", "Deployment"),
    ("leaderworkerset.x-k8s.io/v1", "LeaderWorkerSet"),
)
"""Kinds whose status feeds the DSD status; the controller watches them."""

PRUNE_KINDS: tuple[tuple[str, str], ...] = (
    *WORKLOAD_KINDS,
    ("v1", "Service"),
    ("v1", "ConfigMap"),
    ("v1", "PersistentVolumeClaim"),
    ("autoscaling/v2", "HorizontalPodAutoscaler"),
    ("keda.sh/v1alpha1", "ScaledObject"),
    ("policy/v1", "PodDisruptionBudget"),
    ("networking.k8s.io/v1", "NetworkPolicy"),
    ("networking.istio.io/v1", "VirtualService"),
    ("networking.istio.io/v1", "DestinationRule"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
)
"""Every kind the renderer may emit; children no longer desired are deleted."""

DEPLOYMENT, LEADER_WORKER_SET = WORKLOAD_KINDS
"""``(apiVersion, kind)`` of single-node and multi-node serving workloads."""


def owner_selector(name: str) -> str:
    """Label selector matching every child of the DSD called ``name``."""
    return f"{LABEL_MANAGED_BY}={MANAGED_BY},{LABEL_INSTANCE}={name}"


def managed_labels() -> dict[str, str]:
    """The label every child carries: the watches of workloads select by it."""
    return {LABEL_MANAGED_BY: MANAGED_BY}


def owner_name(obj: dict[str, Any], kind: str = KIND) -> str | None:
    """Name of the DSD (or other deepseek.ai ``kind``) that owns ``obj``, if any."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("kind") == kind and str(ref.get("apiVersion", "")).startswith(f"{GROUP}/"):
            return str(ref.get("name"))
    return None


def owned_by(obj: dict[str, Any], uid: str) -> bool:
    """True when ``obj`` has an owner reference to ``uid``."""
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    return any(ref.get("uid") == uid for ref in refs)
