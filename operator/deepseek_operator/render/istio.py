"""Istio traffic policy (``networking.istio.io/v1``): VirtualService and DestinationRule.

The VirtualService routes the API host (and ``traffic.istio.hosts`` through the listed
gateways) with the spec's timeout and retries; under a Canary rollout it splits traffic
between the ``stable`` and ``canary`` subsets by the canary's weight. The
DestinationRule holds the subsets (by ``deepseek.ai/track``), least-request balancing,
connection limits and outlier ejection after consecutive 5xx.

Pure; called by :func:`deepseek_operator.render.render_children`.
"""

from __future__ import annotations

from typing import Any

from deepseek_operator.api.resource import DeepSeekDeployment
from deepseek_operator.render.common import (
    LABEL_TRACK,
    SERVICE_PORT,
    metadata,
    service_host,
)


def _canary(dsd: DeepSeekDeployment) -> bool:
    return dsd.spec.rollout.strategy == "Canary"


def virtual_service(dsd: DeepSeekDeployment, weight: int = 0) -> dict[str, Any] | None:
    """The VirtualService, when ``traffic.istio`` is set.

    Args:
        weight: percent of traffic on the canary subset under a Canary rollout.
    """
    t = dsd.spec.traffic
    if t.istio is None:
        return None
    host = service_host(dsd)
    port = {"number": SERVICE_PORT}
    if _canary(dsd):
        route = [
            {
                "destination": {"host": host, "subset": "stable", "port": port},
                "weight": 100 - weight,
            },
            {"destination": {"host": host, "subset": "canary", "port": port}, "weight": weight},
        ]
    else:
        route = [{"destination": {"host": host, "port": port}}]
    spec: dict[str, Any] = {"hosts": [host, *t.istio.hosts]}
    if t.istio.gateways:
        spec["gateways"] = ["mesh", *t.istio.gateways]
    retries: dict[str, Any] = {"attempts": t.retries.attempts}
    if t.retries.attempts:
        retries.update(perTryTimeout=t.retries.per_try_timeout, retryOn=t.retries.retry_on)
    spec["http"] = [{"name": "api", "route": route, "timeout": t.timeout, "retries": retries}]
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": metadata(dsd, dsd.name, "traffic"),
        "spec": spec,
    }


def destination_rule(dsd: DeepSeekDeployment) -> dict[str, Any] | None:
    """The DestinationRule, when ``traffic.istio`` is set."""
    if dsd.spec.traffic.istio is None:
        return None
    cb = dsd.spec.resilience.circuit_breaker
    spec: dict[str, Any] = {
        "host": service_host(dsd),
        "trafficPolicy": {
            "loadBalancer": {"simple": "LEAST_REQUEST"},
            "connectionPool": {
                "tcp": {"maxConnections": cb.max_pending_requests, "connectTimeout": "10s"},
                "http": {
                    "http1MaxPendingRequests": cb.max_pending_requests,
                    "http2MaxRequests": cb.max_pending_requests,
                    "idleTimeout": "300s",
                },
            },
            "outlierDetection": {
                "consecutive5xxErrors": cb.consecutive_5xx_errors,
                "interval": cb.interval,
                "baseEjectionTime": cb.base_ejection_time,
                "maxEjectionPercent": cb.max_ejection_percent,
            },
        },
    }
    if _canary(dsd):
        spec["subsets"] = [
            {"name": track, "labels": {LABEL_TRACK: track}} for track in ("stable", "canary")
        ]
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": metadata(dsd, dsd.name, "traffic"),
        "spec": spec,
    }
