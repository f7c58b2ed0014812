"""The circuit breaker loop: each track's error rate from Prometheus → state → status.

Called by the ``circuit_breaker`` kopf timer of :mod:`.handlers` for every DSD with
``traffic.istio`` (the VirtualService it steers). At every ``circuitBreaker.interval``:

1. for each serving track (``stable``; ``canary`` while a canary runs) one instant query
   gives the percent of 5xx among ``http_requests_total`` over ``circuitBreaker.window``
   (no traffic: no value);
2. the pure :func:`deepseek_operator.autoscaling.circuit.step` moves the track's state
   (Closed → Open → HalfOpen → Closed);
3. ``status.circuit`` records it (so it survives operator restarts), an Event names each
   transition with the error rate and the new traffic split, and the caller runs a
   reconcile pass, which renders the VirtualService from ``status.circuit``
   (:func:`deepseek_operator.render.istio.route_weights`) and sets ``Degraded``.

Outlier ejection (the DestinationRule) still ejects single bad pods; this moves tracks.
An unreachable Prometheus records ``status.circuit.error`` and posts one Warning Event;
the circuit states stay as they were.
"""

from __future__ import annotations

import math

import httpx
import structlog

from deepseek_operator.api import DeepSeekDeployment
from deepseek_operator.api.status import (
    CircuitStatus,
    DeepSeekDeploymentStatus,
    TrackCircuit,
)
from deepseek_operator.api.validation import duration_seconds
from deepseek_operator.autoscaling.circuit import CircuitPolicy, TrackState, step
from deepseek_operator.render import canary_active, canary_pod_regex
from deepseek_operator.render.istio import route_weights

from .analysis import Query, prometheus_query
from .canary import parse_time
from .events import Emit, EventSpec
from .kube import Kube
from .status_writer import write_status

log = structlog.get_logger("deepseek_operator.circuit_breaker")
QUERY_ERRORS = (httpx.HTTPError, ValueError, KeyError, IndexError, TypeError)


def guarded(dsd: DeepSeekDeployment) -> bool:
    """True when the DSD has a VirtualService for the breaker to steer."""
    return dsd.spec.traffic.istio is not None


def stable_pod_regex(dsd: DeepSeekDeployment) -> str:
    """PromQL regex of the stable workload's pods only (not the canary's)."""
    return f"{dsd.name}-([a-z0-9]{{6,10}}-[a-z0-9]{{5}}|lws-[0-9]+(-[0-9]+)?)"


def error_rate_query(dsd: DeepSeekDeployment, track: str) -> str:
    """Percent 5xx of one track over ``circuitBreaker.window`` (empty without traffic)."""
    regex = canary_pod_regex(dsd) if track == "canary" else stable_pod_regex(dsd)
    w = f"{max(1, round(duration_seconds(dsd.spec.resilience.circuit_breaker.window)))}s"
    pods = f'namespace="{dsd.namespace}",pod=~"{regex}"'
    errors = f'sum(rate(http_requests_total{{{pods},status=~"5.."}}[{w}]))'
    total = f"sum(rate(http_requests_total{{{pods}}}[{w}]))"
    return f"100 * ({errors} or vector(0)) / {total}"


def tracks(dsd: DeepSeekDeployment) -> list[str]:
    """The tracks serving traffic now."""
    canary = dsd.status.canary if dsd.status else None
    return ["stable", "canary"] if canary_active(dsd, canary) else ["stable"]


def interval_seconds(dsd: DeepSeekDeployment) -> float | None:
    """``circuitBreaker.interval`` in seconds; None without a VirtualService to steer."""
    if not guarded(dsd):
        return None
    return duration_seconds(dsd.spec.resilience.circuit_breaker.interval)


def _same(a: CircuitStatus, b: CircuitStatus) -> bool:
    """Equal states, ``since`` and error: nothing worth a status write."""

    def key(c: CircuitStatus) -> tuple[object, ...]:
        return (c.error, sorted((t.track, t.state, t.since) for t in c.tracks))

    return key(a) == key(b)


def _split(dsd: DeepSeekDeployment, circuit: CircuitStatus) -> str:
    canary = dsd.status.canary if dsd.status else None
    weight = (canary.weight or 0) if canary_active(dsd, canary) and canary else 0
    shares = route_weights(dsd, weight, circuit)
    return ", ".join(f"{k} {v}%" for k, v in shares.items())


def evaluate(
    kube: Kube,
    dsd: DeepSeekDeployment,
    emit: Emit,
    now: str,
    *,
    query: Query | None = None,
    prometheus_url: str | None = None,
) -> bool:
    """One evaluation of every serving track; True when some circuit changed state.

    Args:
        query: the Prometheus query function (default: the HTTP API at ``prometheus_url``,
            else ``monitoring.prometheusAddress``).
        prometheus_url: the operator's configured Prometheus, overriding the DSD's.
    """
    cb = dsd.spec.resilience.circuit_breaker
    recorded = dsd.status.circuit if dsd.status else None
    recorded = recorded or CircuitStatus()
    address = prometheus_url or dsd.spec.monitoring.prometheus_address
    query = query or prometheus_query(address)
    policy = CircuitPolicy(
        cb.error_rate_percent, duration_seconds(cb.cool_down), duration_seconds(cb.close_after)
    )
    at = parse_time(now).timestamp()
    serving = tracks(dsd)
    out = CircuitStatus(last_time=now)
    events: list[EventSpec] = []
    try:
        rates = {t: query(error_rate_query(dsd, t)) for t in serving}
    except QUERY_ERRORS as exc:
        error = f"Prometheus at {address} unreachable or failing: {type(exc).__name__}: {exc}"
        log.warning("circuit_prometheus_failed", namespace=dsd.namespace, name=dsd.name)
        if recorded.error is None:
            emit(EventSpec("Warning", "CircuitEvaluationFailed", error[:1000]))
        if recorded.error is None:  # the first failed round is recorded, not every one
            _write(kube, dsd, recorded.model_copy(update={"last_time": now, "error": error[:1000]}))
        return False
    changed = False
    for track in serving:
        rate = rates[track]
        rate = None if rate is None or math.isnan(rate) or math.isinf(rate) else rate
        old = recorded.track(track)
        since = parse_time(old.since).timestamp() if old and old.since else None
        t = step(TrackState(old.state if old else "Closed", since), rate, at, policy)
        entry = TrackCircuit(
            track=track,
            state=t.next.state,
            since=now if t.changed or old is None or old.since is None else old.since,
            error_rate_percent=None if rate is None else round(rate, 3),
            message=t.message if t.changed or old is None else (old.message or t.message),
        )
        out.tracks.append(entry)
        if t.changed:
            changed = True
            events.append(EventSpec("", t.reason, f"{track} track: {t.message}"))
    for gone in recorded.tracks:  # a track that stopped serving (canary ended) is dropped
        if gone.track not in serving and gone.state != "Closed":
            changed = True
    split = _split(dsd, out)
    for event in events:
        kind = "Warning" if event.reason in {"CircuitOpened", "CircuitReopened"} else "Normal"
        emit(EventSpec(kind, event.reason, f"{event.message}; traffic now: {split}"[:1000]))
    log.info(
        "circuit_evaluated",
        namespace=dsd.namespace,
        name=dsd.name,
        rates={k: v for k, v in rates.items()},
        states={t.track: t.state for t in out.tracks},
        split=split,
        changed=changed,
    )
    if changed or not recorded.tracks or not _same(recorded, out):
        _write(kube, dsd, out)  # steady and healthy: no write at all
    return changed


def _write(kube: Kube, dsd: DeepSeekDeployment, circuit: CircuitStatus) -> None:
    def compute(cur: DeepSeekDeploymentStatus | None) -> DeepSeekDeploymentStatus | None:
        if cur is None:
            return None
        out = cur.model_copy(deep=True)
        out.circuit = circuit
        return out

    write_status(kube, dsd.namespace, dsd.name, compute)
