"""Istio traffic policy (``networking.istio.io/v1``): VirtualService and DestinationRule.

The VirtualService routes the API host (and ``traffic.istio.hosts`` through the listed
gateways) with the spec's timeout and retries; under a Canary rollout it splits traffic
between the ``stable`` and ``canary`` subsets by the canary's weight. The
DestinationRule holds the subsets (by ``deepseek.ai/track``), least-request balancing,
connection limits and outlier ejection after consecutive 5xx (single pods).

The circuit breaker (``status.circuit``, decided by the operator from each track's error
rate) moves whole tracks: :func:`route_weights` takes an Open track's share away (a
HalfOpen one keeps ``halfOpenPercent``) and gives it to a closed track that serves, else
to the ``fallback`` DeepSeekDeployment's API Service, else leaves it (nowhere to go)::

    canary 10 %, canary Open          -> stable 100, canary 0
    no canary, stable Open, fallback  -> stable 0, fallback 100
    no canary, stable HalfOpen (10 %) -> stable 10, fallback 90

Pure; called by :func:`deepseek_operator.render.render_children`.
"""

from __future__ import annotations

from typing import Any

from deepseek_operator.api.resource import DeepSeekDeployment
from deepseek_operator.api.status import CircuitStatus
from deepseek_operator.render.common import (
    CLUSTER_DOMAIN,
    LABEL_TRACK,
    SERVICE_PORT,
    metadata,
    service_host,
)

FALLBACK = "fallback"
"""Key of the fallback Service in :func:`route_weights`."""


def _canary(dsd: DeepSeekDeployment) -> bool:
    return dsd.spec.rollout.strategy == "Canary"


def route_weights(
    dsd: DeepSeekDeployment, weight: int = 0, circuit: CircuitStatus | None = None
) -> dict[str, int]:
    """Percent of traffic per destination: ``stable``, ``canary``, ``fallback``.

    Args:
        weight: percent on the canary under a Canary rollout (0 outside a canary).
        circuit: the circuit state per track; None or all closed leaves the split as is.
    """
    shares = {"stable": 100 - weight, "canary": weight} if _canary(dsd) else {"stable": 100}
    if circuit is None:
        return shares
    cb = dsd.spec.resilience.circuit_breaker
    states = {t.track: t.state for t in circuit.tracks}
    out = dict(shares)
    for track, normal in shares.items():
        state = states.get(track, "Closed")
        if state == "Closed" or normal == 0:
            continue
        keep = 0 if state == "Open" else min(normal, cb.half_open_percent)
        healthy = [
            t
            for t, w in shares.items()
            if t != track and w > 0 and states.get(t) in {None, "Closed"}
        ]
        to = healthy[0] if healthy else (FALLBACK if cb.fallback else None)
        if to is None:
            continue  # nowhere to send it: the track keeps its traffic (Degraded says so)
        out[track] -= normal - keep
        out[to] = out.get(to, 0) + normal - keep
    return out


def _fallback_host(dsd: DeepSeekDeployment) -> str:
    name = dsd.spec.resilience.circuit_breaker.fallback
    return f"{name}.{dsd.namespace}.svc.{CLUSTER_DOMAIN}"


def virtual_service(
    dsd: DeepSeekDeployment, weight: int = 0, circuit: CircuitStatus | None = None
) -> dict[str, Any] | None:
    """The VirtualService, when ``traffic.istio`` is set.

    Args:
        weight: percent of traffic on the canary subset under a Canary rollout.
        circuit: the circuit breaker state per track (``status.circuit``), if any.
    """
    t = dsd.spec.traffic
    if t.istio is None:
        return None
    host = service_host(dsd)
    port = {"number": SERVICE_PORT}
    shares = route_weights(dsd, weight, circuit)
    if _canary(dsd):
        route = [
            {
                "destination": {"host": host, "subset": track, "port": port},
                "weight": shares[track],
            }
            for track in ("stable", "canary")
        ]
    elif FALLBACK in shares:
        route = [{"destination": {"host": host, "port": port}, "weight": shares["stable"]}]
    else:
        route = [{"destination": {"host": host, "port": port}}]
    if FALLBACK in shares:
        fallback = {"host": _fallback_host(dsd), "port": port}
        route.append({"destination": fallback, "weight": shares[FALLBACK]})
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
