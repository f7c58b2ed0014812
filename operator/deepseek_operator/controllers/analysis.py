"""Canary analysis: query Prometheus for each metric of ``rollout.canary.analysis`` (I/O).

Called by the canary timer in :mod:`.handlers` when an analysis run is due; the result
(an :class:`~deepseek_operator.api.status.AnalysisRun`) feeds the pure state machine in
:mod:`.canary`. Each metric is one instant query (``GET {address}/api/v1/query``): a
custom ``query`` (``{{ namespace }}``, ``{{ name }}``, ``{{ revision }}`` substituted)
or a ``builtin`` over the canary pods' metrics. No data, a non-number, or an unreachable
Prometheus fails the metric with a message saying so: a run never passes silently.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import httpx
import structlog

from deepseek_operator.api import DeepSeekDeployment
from deepseek_operator.api.scaling import AnalysisMetric
from deepseek_operator.api.status import AnalysisRun, MetricResult
from deepseek_operator.render import canary_pod_regex, spec_revision

log = structlog.get_logger("deepseek_operator.analysis")
Query = Callable[[str], float | None]
"""Runs one PromQL instant query: its single value, None for no data; raises on errors."""


def builtin_query(dsd: DeepSeekDeployment, builtin: str) -> str:
    """PromQL of a builtin metric over the canary pods of ``dsd`` (percent or seconds)."""
    pods = f'namespace="{dsd.namespace}",pod=~"{canary_pod_regex(dsd)}"'
    if builtin == "error-rate":
        # A healthy revision has no 5xx series at all: ``or vector(0)`` makes that 0 %,
        # while no requests at all (empty denominator) still reads as "no data".
        errors = f'(sum(rate(http_requests_total{{{pods},status=~"5.."}}[1m])) or vector(0))'
        total = f"sum(rate(http_requests_total{{{pods}}}[1m]))"
        return f"100 * {errors} / {total}"
    series = {
        "latency-p95": "vllm:e2e_request_latency_seconds_bucket",
        "ttft-p95": "vllm:time_to_first_token_seconds_bucket",
    }.get(builtin)
    if series is None:
        raise ValueError(f"unknown builtin analysis metric {builtin!r}")
    return f"histogram_quantile(0.95, sum by (le) (rate({series}{{{pods}}}[1m])))"


def metric_query(dsd: DeepSeekDeployment, metric: AnalysisMetric) -> str:
    """The PromQL a metric runs."""
    if metric.builtin is not None:
        return builtin_query(dsd, metric.builtin)
    text = metric.query or ""
    for key, value in (
        ("namespace", dsd.namespace),
        ("name", dsd.name),
        ("revision", spec_revision(dsd)),
    ):
        text = text.replace("{{ " + key + " }}", value).replace("{{" + key + "}}", value)
    return text


def prometheus_query(address: str, timeout: float = 5.0) -> Query:
    """A :data:`Query` against the Prometheus HTTP API at ``address``."""

    def run(promql: str) -> float | None:
        url = address.rstrip("/") + "/api/v1/query"
        response = httpx.get(url, params={"query": promql}, timeout=timeout)
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        if body.get("status") != "success":
            raise ValueError(f"Prometheus error: {body.get('error', 'unknown')}")
        data: dict[str, Any] = body.get("data") or {}
        result: Any = data.get("result")
        if data.get("resultType") == "scalar":
            return float(result[1])
        if not result:
            return None
        if len(result) > 1:
            raise ValueError(f"query returned {len(result)} series, expected one")
        return float(result[0]["value"][1])

    return run


def _judge(metric: AnalysisMetric, value: float | None) -> MetricResult:
    if value is None:
        return MetricResult(name=metric.name, message="no data")
    if math.isnan(value):
        return MetricResult(name=metric.name, message="value is NaN (no traffic?)")
    if metric.max is not None and value > metric.max:
        return MetricResult(name=metric.name, value=value, message=f"above max {metric.max:g}")
    if metric.min is not None and value < metric.min:
        return MetricResult(name=metric.name, value=value, message=f"below min {metric.min:g}")
    return MetricResult(name=metric.name, value=value, passed=True)


def run_analysis(dsd: DeepSeekDeployment, now: str, query: Query | None = None) -> AnalysisRun:
    """Run every analysis metric of ``dsd`` once.

    Args:
        dsd: the DeepSeekDeployment whose canary is analysed.
        now: RFC 3339 time recorded on the run.
        query: the query function (default: Prometheus at ``monitoring.prometheusAddress``).
    """
    query = query or prometheus_query(dsd.spec.monitoring.prometheus_address)
    results = []
    for metric in dsd.spec.rollout.canary.analysis.metrics:
        try:
            results.append(_judge(metric, query(metric_query(dsd, metric))))
        except (httpx.HTTPError, ValueError, KeyError, IndexError, TypeError) as exc:
            reason = f"Prometheus query failed: {type(exc).__name__}: {exc}"[:300]
            results.append(MetricResult(name=metric.name, message=reason))
    run = AnalysisRun(time=now, passed=all(r.passed for r in results), metrics=results)
    if not results:
        run = AnalysisRun(time=now, passed=True, metrics=[])
    log.info(
        "canary_analysis",
        namespace=dsd.namespace,
        name=dsd.name,
        passed=run.passed,
        metrics={r.name: r.value for r in results},
    )
    return run
