"""The child kinds the controller manages, and the labels that mark its children (pure).

Read by :mod:`.reconcile` (prune and workload lists), :mod:`.handlers` (watches)
and :mod:`.rbac` (so RBAC lists exactly these kinds).
"""

from __future__ import annotations

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

INSTANCE_LABEL = "app.kubernetes.io/instance"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "deepseek-operator"


def owner_selector(name: str) -> str:
    """Label selector matching every child of the DSD called ``name``."""
    return f"{MANAGED_BY_LABEL}={MANAGED_BY},{INSTANCE_LABEL}={name}"
