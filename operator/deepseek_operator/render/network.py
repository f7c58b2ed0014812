"""Services, PodDisruptionBudget and NetworkPolicy of the serving pods.

* ``<name>`` (ClusterIP, port 80 -> ``http``): the API, selecting ready serving pods of
  both tracks (LWS followers are excluded by ``deepseek.ai/role: server``).
* ``<name>-headless``: every pod including not-ready ones, for per-pod DNS and the
  leader address of multi-node groups.
* PDB: at most one stable serving pod disrupted at a time.
* NetworkPolicy: the pods accept the API port from their namespace, the allowed
  namespaces, monitoring and istio-system; and every port from their own group.

Pure; called by :func:`deepseek_operator.render.render_children`.
"""

from __future__ import annotations

from typing import Any

from deepseek_operator.api.resource import DeepSeekDeployment
from deepseek_operator.render.common import (
    LABEL_DEPLOYMENT,
    LABEL_ROLE,
    LABEL_SERVICE,
    LABEL_TRACK,
    SERVICE_PORT,
    metadata,
)

SYSTEM_NAMESPACES = ("monitoring", "istio-system")


def _http_port(port: int) -> dict[str, Any]:
    """A Service port forwarding ``port`` to the pods' named ``http`` port."""
    return {
        "name": "http",
        "port": port,
        "targetPort": "http",
        "protocol": "TCP",
        "appProtocol": "http",
    }


def api_service(dsd: DeepSeekDeployment) -> dict[str, Any]:
    """The ClusterIP Service of the OpenAI-compatible API."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(dsd, dsd.name, "server", {LABEL_SERVICE: "api"}),
        "spec": {
            "type": "ClusterIP",
            "selector": {LABEL_DEPLOYMENT: dsd.name, LABEL_ROLE: "server"},
            "ports": [_http_port(SERVICE_PORT)],
        },
    }


def headless_service(dsd: DeepSeekDeployment) -> dict[str, Any]:
    """The headless Service publishing every pod, ready or not."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(dsd, f"{dsd.name}-headless", "server", {LABEL_SERVICE: "headless"}),
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": {LABEL_DEPLOYMENT: dsd.name},
            "ports": [_http_port(dsd.spec.engine.port)],
        },
    }


def disruption_budget(dsd: DeepSeekDeployment) -> dict[str, Any]:
    """PodDisruptionBudget: one stable serving pod down at a time."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": metadata(dsd, dsd.name, "server"),
        "spec": {
            "maxUnavailable": 1,
            "selector": {
                "matchLabels": {
                    LABEL_DEPLOYMENT: dsd.name,
                    LABEL_TRACK: "stable",
                    LABEL_ROLE: "server",
                }
            },
        },
    }


def network_policy(dsd: DeepSeekDeployment) -> dict[str, Any] | None:
    """Ingress NetworkPolicy, unless ``traffic.networkPolicy.enabled`` is false."""
    np = dsd.spec.traffic.network_policy
    if not np.enabled:
        return None
    namespaces = sorted({*SYSTEM_NAMESPACES, *np.allowed_namespaces})
    peers: list[dict[str, Any]] = [{"podSelector": {}}]
    peers += [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}}}
        for ns in namespaces
    ]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(dsd, dsd.name, "server"),
        "spec": {
            "podSelector": {"matchLabels": {LABEL_DEPLOYMENT: dsd.name}},
            "policyTypes": ["Ingress"],
            "ingress": [
                {"from": [{"podSelector": {"matchLabels": {LABEL_DEPLOYMENT: dsd.name}}}]},
                {"from": peers, "ports": [{"protocol": "TCP", "port": dsd.spec.engine.port}]},
            ],
        },
    }
