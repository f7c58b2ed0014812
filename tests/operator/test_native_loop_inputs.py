"""What the native autoscaler and circuit breaker loops read: pod counts from live pod
objects, the windowed PromQL, the per-track error rate, and when a round is due."""

from __future__ import annotations

from typing import Any

import kopf
import pytest
from dsd_factory import dsd

from deepseek_operator.api.scaling import ScalingMetric
from deepseek_operator.autoscaling.decide import PodCounts
from deepseek_operator.controllers import autoscaler, circuit_breaker, loops

NATIVE: dict[str, Any] = {
    "replicas": None,
    "autoscaling": {"provider": "native", "native": {"interval": "10s"}},
}


def pod(
    ready: str | None, scheduled: str | None, reason: str = "", deleting: bool = False
) -> dict[str, Any]:
    conditions = []
    if scheduled is not None:
        conditions.append({"type": "PodScheduled", "status": scheduled, "reason": reason})
    if ready is not None:
        conditions.append({"type": "Ready", "status": ready})
    meta: dict[str, Any] = {"name": "p"}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": meta, "status": {"conditions": conditions}}


def test_pod_counts() -> None:
    pods = [
        pod("True", "True"),
        pod("True", "True"),
        pod("False", "True"),  # loading weights
        pod(None, None),  # not looked at by the scheduler yet
        pod(None, "False", "Unschedulable"),  # no free GPUs
        pod("True", "True", deleting=True),  # terminating: not capacity
    ]
    assert autoscaler.pod_counts(pods, 5) == PodCounts(5, 2, 2, 1)


@pytest.mark.parametrize(
    ("kind", "want"),
    [
        (
            "QueueDepth",
            'sum(avg_over_time(vllm:num_requests_waiting{namespace="serving",service="r1"}[60s]))',
        ),
        (
            "KVCacheUsage",
            'avg(avg_over_time(vllm:kv_cache_usage_perc{namespace="serving",service="r1"}[60s]))',
        ),
        (
            "TTFT",
            "histogram_quantile(0.95, sum by (le) (rate(vllm:time_to_first_token_seconds_bucket"
            '{namespace="serving",service="r1"}[60s])))',
        ),
    ],
)
def test_window_query(kind: str, want: str) -> None:
    metric = ScalingMetric(type=kind, target=1)  # type: ignore[arg-type]
    assert autoscaler.window_query(dsd(**NATIVE), metric, 60.0) == want


def test_error_rate_query_per_track() -> None:
    d = dsd(traffic={"istio": {}}, resilience={"circuitBreaker": {"window": "30s"}})
    stable = circuit_breaker.error_rate_query(d, "stable")
    assert stable == (
        '100 * (sum(rate(http_requests_total{namespace="serving",pod=~"r1-([a-z0-9]{6,10}-'
        '[a-z0-9]{5}|lws-[0-9]+(-[0-9]+)?)",status=~"5.."}[30s])) or vector(0)) / '
        'sum(rate(http_requests_total{namespace="serving",pod=~"r1-([a-z0-9]{6,10}-[a-z0-9]{5}'
        '|lws-[0-9]+(-[0-9]+)?)"}[30s]))'
    )
    assert 'pod=~"r1-canary-' in circuit_breaker.error_rate_query(d, "canary")
    assert circuit_breaker.tracks(d) == ["stable"]


def test_rounds_are_due_by_the_spec_interval() -> None:
    memo = kopf.Memo()
    interval = autoscaler.interval_seconds(dsd(**NATIVE))
    assert interval == 10.0
    assert loops.due(memo, "k", interval, 100.0)  # never ran: at once, and booked
    assert not loops.due(memo, "k", interval, 105.0)
    assert loops.due(memo, "k", interval, 110.0)
    assert not loops.due(kopf.Memo(), "k", None, 0.0)  # nothing to run
    assert autoscaler.interval_seconds(dsd()) is None  # not a native autoscaler
    assert circuit_breaker.interval_seconds(dsd()) is None  # no VirtualService to steer
    assert circuit_breaker.interval_seconds(dsd(traffic={"istio": {}})) == 30.0
