"""The native autoscaler loop (``autoscaling.provider: native``): Prometheus → decide → scale.

Called by the ``native_autoscaler`` kopf timer of :mod:`.handlers` for every DSD with a
native autoscaler; each run whose ``autoscaling.native.interval`` is due:

1. reads the stable workload's scale subresource (``spec.replicas``) and its serving pods:
   ready, starting (scheduled, not ready: pulling or loading weights) and unschedulable
   (``PodScheduled=False``, reason ``Unschedulable``: no free GPUs);
2. queries Prometheus for each metric twice, averaged over the stable and the panic
   window (``avg_over_time`` / ``rate`` over the window, so Prometheus holds the samples
   and the operator keeps no history of its own but the recommendations in status);
3. calls the pure :func:`deepseek_operator.autoscaling.decide.decide`;
4. writes ``spec.replicas`` of the scale subresource when it changed, posts an Event
   with the numbers (``Scaled``; ``ScaleUpBlocked`` when unschedulable pods stop scale-up),
   and records ``status.autoscaler`` and the ``ScalingActive`` condition.

An unreachable Prometheus is never a silent no-op: ``ScalingActive=False`` with reason
``PrometheusUnreachable``, a Warning Event when that starts, replicas left as they are.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import httpx
import structlog

from deepseek_operator.api import DeepSeekDeployment
from deepseek_operator.api.scaling import AutoscalingSpec, ScalingMetric
from deepseek_operator.api.status import AutoscalerStatus, DeepSeekDeploymentStatus
from deepseek_operator.api.status import Recommendation as RecordedRecommendation
from deepseek_operator.api.validation import duration_seconds
from deepseek_operator.autoscaling.decide import (
    Decision,
    DecisionInputs,
    MetricSample,
    PodCounts,
    Policy,
    Recommendation,
    decide,
)
from deepseek_operator.render import selector_string, workload_name
from deepseek_operator.render.common import pod_name_regex

from .analysis import Query, prometheus_query
from .canary import parse_time
from .events import Emit, EventSpec
from .kinds import DEPLOYMENT, LEADER_WORKER_SET
from .kube import Kube, KubeError
from .status_writer import write_status

log = structlog.get_logger("deepseek_operator.autoscaler")
QUERY_ERRORS = (httpx.HTTPError, ValueError, KeyError, IndexError, TypeError)


def native(spec: AutoscalingSpec | None) -> bool:
    """True when ``spec.autoscaling`` asks for the operator's own autoscaler."""
    return spec is not None and spec.provider == "native"


def window_query(dsd: DeepSeekDeployment, metric: ScalingMetric, window: float) -> str:
    """PromQL of one metric averaged over ``window`` seconds (the native provider's form)."""
    w = f"{max(1, round(window))}s"
    sel = f'namespace="{dsd.namespace}",service="{dsd.name}"'
    if metric.type == "QueueDepth":
        return f"sum(avg_over_time(vllm:num_requests_waiting{{{sel}}}[{w}]))"
    if metric.type == "KVCacheUsage":
        return f"avg(avg_over_time(vllm:kv_cache_usage_perc{{{sel}}}[{w}]))"
    if metric.type == "TTFT":
        return (
            "histogram_quantile(0.95, sum by (le) "
            f"(rate(vllm:time_to_first_token_seconds_bucket{{{sel}}}[{w}])))"
        )
    pods = f'namespace="{dsd.namespace}",pod=~"{pod_name_regex(dsd)}"'
    return f"avg(avg_over_time(DCGM_FI_DEV_GPU_UTIL{{{pods}}}[{w}]))"


def pod_counts(pods: list[dict[str, Any]], current: int) -> PodCounts:
    """Ready, starting and unschedulable serving pods (terminating pods do not count)."""
    ready = starting = unschedulable = 0
    for pod in pods:
        if pod["metadata"].get("deletionTimestamp"):
            continue
        conditions = {c.get("type"): c for c in (pod.get("status") or {}).get("conditions") or []}
        scheduled = conditions.get("PodScheduled") or {}
        if (conditions.get("Ready") or {}).get("status") == "True":
            ready += 1
        elif scheduled.get("status") == "True":
            starting += 1
        elif scheduled.get("reason") == "Unschedulable":
            unschedulable += 1
        else:
            starting += 1  # not yet looked at by the scheduler: on its way
    return PodCounts(current=current, ready=ready, starting=starting, unschedulable=unschedulable)


def _seconds(value: str | None) -> float | None:
    return parse_time(value).timestamp() if value else None


def _rfc3339(seconds: float) -> str:
    return datetime.fromtimestamp(round(seconds), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def interval_seconds(dsd: DeepSeekDeployment) -> float | None:
    """``autoscaling.native.interval`` in seconds; None without a native autoscaler."""
    a = dsd.spec.autoscaling
    if a is None or not native(a):
        return None
    return duration_seconds(a.native.interval)


@dataclass(frozen=True, slots=True)
class Target:
    """The scale subresource the autoscaler writes."""

    path: str
    kind: str
    name: str


def scale_target(kube: Kube, dsd: DeepSeekDeployment) -> Target | None:
    """The stable workload's scale subresource (Deployment or LeaderWorkerSet)."""
    plan = dsd.status.plan if dsd.status else None
    multi = plan is not None and (plan.nodes_per_replica or 1) > 1
    api_version, kind = LEADER_WORKER_SET if multi else DEPLOYMENT
    info = kube.resource(api_version, kind)
    if info is None:
        return None
    name = workload_name(dsd, multi_node=multi)
    return Target(info.path(dsd.namespace, name) + "/scale", kind, name)


def samples(
    dsd: DeepSeekDeployment, query: Query, stable: float, panic: float
) -> tuple[MetricSample, ...]:
    """Each metric's stable- and panic-window value (raises when Prometheus fails)."""

    def value(promql: str) -> float | None:
        v = query(promql)
        return None if v is None or math.isnan(v) or math.isinf(v) else v

    a = dsd.spec.autoscaling
    metrics = a.metrics if a is not None else []
    return tuple(
        MetricSample(
            m.type,
            m.target,
            value(window_query(dsd, m, stable)),
            value(window_query(dsd, m, panic)),
        )
        for m in metrics
    )


def policy(a: AutoscalingSpec) -> Policy:
    """The decision's bounds and windows from the spec."""
    return Policy(
        min_replicas=a.min_replicas,
        max_replicas=a.max_replicas,
        stable_window=duration_seconds(a.native.stable_window),
        panic_window=duration_seconds(a.native.panic_window),
        panic_threshold=a.native.panic_threshold_percent / 100,
        scale_down_stabilization=float(a.scale_down_stabilization_seconds),
    )


def _record(previous: AutoscalerStatus | None, decision: Decision, now: str) -> AutoscalerStatus:
    last_scale = previous.last_scale_time if previous else None
    return AutoscalerStatus(
        desired_replicas=decision.desired,
        reason=decision.reason,
        metric=decision.metric,
        message=decision.message[:1000],
        last_time=now,
        last_scale_time=now if decision.changed else last_scale,
        panic_until=_rfc3339(decision.panic_until) if decision.panic_until else None,
        recommendations=[
            RecordedRecommendation(time=_rfc3339(r.time), replicas=r.replicas)
            for r in decision.history[-64:]
        ],
    )


def _events(previous: AutoscalerStatus | None, decision: Decision) -> list[EventSpec]:
    events = []
    if decision.changed:
        events.append(
            EventSpec(
                "Normal",
                "Scaled",
                f"{decision.reason}: {decision.current} -> {decision.desired} replicas "
                f"({decision.metric}); {decision.message}"[:1000],
            )
        )
    blocked = decision.reason == "NoCapacity"
    if blocked and (previous is None or previous.reason != "NoCapacity"):
        events.append(EventSpec("Warning", "ScaleUpBlocked", decision.message[:1000]))
    return events


RECORDED: Final = ("desired_replicas", "reason", "metric", "panic_until")
"""What makes a decision worth a status write; the rest (message, history) rides along."""


def _write(
    kube: Kube,
    dsd: DeepSeekDeployment,
    autoscaler: AutoscalerStatus | None,
    active: tuple[bool, str, str],
    now: str,
) -> None:
    """Record the decision and ``ScalingActive``; no request when neither changed."""
    generation = dsd.metadata.generation

    def compute(cur: DeepSeekDeploymentStatus | None) -> DeepSeekDeploymentStatus | None:
        out = (cur or DeepSeekDeploymentStatus()).model_copy(deep=True)
        old = out.autoscaler
        if autoscaler is not None and (
            old is None or any(getattr(old, k) != getattr(autoscaler, k) for k in RECORDED)
        ):
            out.autoscaler = autoscaler
        out.set_condition("ScalingActive", active[0], active[1], active[2], generation, now=now)
        out.keep_conditions()
        return out

    write_status(kube, dsd.namespace, dsd.name, compute)


def run_autoscaler(
    kube: Kube,
    dsd: DeepSeekDeployment,
    emit: Emit,
    now: str,
    *,
    query: Query | None = None,
    prometheus_url: str | None = None,
    history: tuple[Recommendation, ...] | None = None,
) -> Decision | None:
    """One native autoscaling round for ``dsd``; returns the decision (None: none made).

    Status is written only when the decision's replicas, reason, metric or panic
    changed (or ``ScalingActive`` did), so a steady DSD costs no writes; the caller keeps
    the newest recommendations between rounds (``history``), and ``status.autoscaler``
    holds them as of the last write for a restarted operator.

    Args:
        query: the Prometheus query function (default: the HTTP API at ``prometheus_url``,
            else ``monitoring.prometheusAddress``).
        prometheus_url: the operator's configured Prometheus, overriding the DSD's.
        history: the recommendations the previous round returned (None: from status).
    """
    a = dsd.spec.autoscaling
    if a is None or not native(a):
        return None
    previous = dsd.status.autoscaler if dsd.status else None
    recorded_active = dsd.status.get_condition("ScalingActive") if dsd.status else None
    target = scale_target(kube, dsd)
    scale = kube.request("GET", target.path) if target is not None else None
    if target is None or scale is None:
        return None  # no workload yet: the reconcile pass creates it
    current = int((scale.get("spec") or {}).get("replicas") or 0)
    pods = kube.list("v1", "Pod", dsd.namespace, selector_string(dsd))
    counts = pod_counts(pods, current)
    address = prometheus_url or dsd.spec.monitoring.prometheus_address
    query = query or prometheus_query(address)
    p = policy(a)
    try:
        measured = samples(dsd, query, p.stable_window, p.panic_window)
    except QUERY_ERRORS as exc:
        reason = f"Prometheus at {address} unreachable or failing: {type(exc).__name__}: {exc}"
        log.warning(
            "autoscaler_prometheus_failed",
            namespace=dsd.namespace,
            name=dsd.name,
            error=reason[:300],
        )
        if recorded_active is None or recorded_active.reason != "PrometheusUnreachable":
            emit(EventSpec("Warning", "PrometheusUnreachable", reason[:1000]))
        _write(kube, dsd, None, (False, "PrometheusUnreachable", reason[:1000]), now)
        return None
    if history is None:
        history = tuple(
            Recommendation(parse_time(r.time).timestamp(), r.replicas)
            for r in (previous.recommendations if previous else [])
        )
    decision = decide(
        DecisionInputs(
            now=parse_time(now).timestamp(),
            pods=counts,
            samples=measured,
            policy=p,
            history=history,
            panic_until=_seconds(previous.panic_until if previous else None),
        )
    )
    if decision.changed:
        try:
            kube.request(
                "PATCH",
                target.path,
                body={"spec": {"replicas": decision.desired}},
                content_type="application/merge-patch+json",
            )
        except KubeError as exc:
            log.warning("autoscaler_scale_failed", name=dsd.name, error=str(exc)[:300])
            raise
    log.info(
        "autoscaler_decision",
        namespace=dsd.namespace,
        name=dsd.name,
        workload=f"{target.kind}/{target.name}",
        current=decision.current,
        desired=decision.desired,
        reason=decision.reason,
        metric=decision.metric,
        per_metric=decision.per_metric,
        ready=counts.ready,
        starting=counts.starting,
        unschedulable=counts.unschedulable,
        samples={s.type: (s.stable, s.panic) for s in measured},
    )
    active_reason = "NoMetrics" if decision.reason == "NoMetrics" else "ValidMetrics"
    active = (
        decision.reason != "NoMetrics",
        active_reason,
        "the native autoscaler reads its metrics"
        if active_reason == "ValidMetrics"
        else "no metric returned data: replicas are kept",
    )
    _write(kube, dsd, _record(previous, decision, now), active, now)
    for event in _events(previous, decision):
        emit(event)
    return decision
