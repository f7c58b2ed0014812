"""Monitoring (``monitoring.coreos.com/v1``): ServiceMonitor and PrometheusRule.

Alerts (thresholds from ``spec.monitoring.alerts.thresholds``; each has a ``runbook_url``
annotation pointing at ``docs/runbooks/<alert>.md``):

=========================  ====================================================
DeepSeekGPUSaturated       average GPU utilisation above 90 % for 5 m
DeepSeekKVCacheFragmented  KV cache fragmentation above 30 %
DeepSeekHighLatencyP95     p95 end-to-end latency above 500 ms
DeepSeekHighErrorRate      5xx responses above 1 % of requests
DeepSeekCircuitOpen        5xx responses above 5 % over one minute (critical)
=========================  ====================================================

Metrics: vLLM-compatible names the runtime and vLLM both serve (``vllm:*``,
``http_requests_total{status}``), DCGM's ``DCGM_FI_DEV_GPU_UTIL`` (with the workload in
``namespace``/``pod`` or, when dcgm-exporter is scraped with ``honorLabels: false``, in
``exported_namespace``/``exported_pod``: :func:`gpu_utilization`), and the runtime's
``dsr:kv_cache_fragmentation_perc`` (share of allocated KV slots left unused, 0-1).
``tests/operator/test_alert_rules_promtool.py`` proves every alert with ``promtool``.

Pure; called by :func:`deepseek_operator.render.render_children`.
"""

from __future__ import annotations

from typing import Any

from deepseek_operator.api.resource import DeepSeekDeployment
from deepseek_operator.render.common import (
    LABEL_DEPLOYMENT,
    LABEL_REVISION,
    LABEL_SERVICE,
    LABEL_TRACK,
    metadata,
    pod_name_regex,
)

ALERTS = (
    "DeepSeekGPUSaturated",
    "DeepSeekKVCacheFragmented",
    "DeepSeekHighLatencyP95",
    "DeepSeekHighErrorRate",
    "DeepSeekCircuitOpen",
)


def service_monitor(dsd: DeepSeekDeployment) -> dict[str, Any] | None:
    """ServiceMonitor scraping ``/metrics`` of the API Service's endpoints."""
    sm = dsd.spec.monitoring.service_monitor
    if not sm.enabled:
        return None
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": metadata(dsd, dsd.name, "monitoring"),
        "spec": {
            "selector": {"matchLabels": {LABEL_DEPLOYMENT: dsd.name, LABEL_SERVICE: "api"}},
            "endpoints": [{"port": "http", "path": "/metrics", "interval": sm.interval}],
            "podTargetLabels": [LABEL_TRACK, LABEL_REVISION],
        },
    }


def gpu_utilization(dsd: DeepSeekDeployment) -> str:
    """DCGM GPU utilisation series of this DSD's pods, however dcgm-exporter is scraped.

    With ``honorLabels: true`` dcgm-exporter's own ``namespace``/``pod`` labels (the GPU's
    workload) are kept; with ``honorLabels: false`` (a common install) the target's labels
    win and the workload's arrive as ``exported_namespace``/``exported_pod``. The union
    covers both; one scrape config yields only one shape, so no GPU is counted twice.
    """
    regex = pod_name_regex(dsd)
    return (
        f'(DCGM_FI_DEV_GPU_UTIL{{namespace="{dsd.namespace}",pod=~"{regex}"}} or '
        f'DCGM_FI_DEV_GPU_UTIL{{exported_namespace="{dsd.namespace}",exported_pod=~"{regex}"}})'
    )


def _error_ratio(sel: str, window: str) -> str:
    return (
        f'sum(rate(http_requests_total{{{sel},status=~"5.."}}[{window}])) / '
        f"clamp_min(sum(rate(http_requests_total{{{sel}}}[{window}])), 1e-9) * 100"
    )


def _rule(
    dsd: DeepSeekDeployment, alert: str, expr: str, when: tuple[str, str], summary: str
) -> dict[str, Any]:
    duration, severity = when
    base = dsd.spec.monitoring.alerts.runbook_base_url.rstrip("/")
    return {
        "alert": alert,
        "expr": expr,
        "for": duration,
        "labels": {
            "severity": severity,
            LABEL_DEPLOYMENT.replace("/", "_").replace(".", "_"): dsd.name,
        },
        "annotations": {
            "summary": summary,
            "description": f"DeepSeekDeployment {dsd.namespace}/{dsd.name}: {summary}.",
            "runbook_url": f"{base}/{alert}.md",
        },
    }


def prometheus_rule(dsd: DeepSeekDeployment) -> dict[str, Any] | None:
    """PrometheusRule with the five alerts, unless alerts are disabled."""
    alerts = dsd.spec.monitoring.alerts
    if not alerts.enabled:
        return None
    t = alerts.thresholds
    sel = f'namespace="{dsd.namespace}",service="{dsd.name}"'
    circuit = dsd.spec.resilience.circuit_breaker.error_rate_percent
    rules = [
        _rule(
            dsd,
            ALERTS[0],
            f"avg({gpu_utilization(dsd)}) > {t.gpu_utilization_percent:g}",
            (t.gpu_utilization_for, "warning"),
            f"GPU utilisation above {t.gpu_utilization_percent:g}%",
        ),
        _rule(
            dsd,
            ALERTS[1],
            f"max(dsr:kv_cache_fragmentation_perc{{{sel}}}) * 100 > "
            f"{t.kv_cache_fragmentation_percent:g}",
            (t.for_duration, "warning"),
            f"KV cache fragmentation above {t.kv_cache_fragmentation_percent:g}%",
        ),
        _rule(
            dsd,
            ALERTS[2],
            "histogram_quantile(0.95, sum by (le) "
            f"(rate(vllm:e2e_request_latency_seconds_bucket{{{sel}}}[5m]))) > "
            f"{t.p95_latency_milliseconds / 1000:g}",
            (t.for_duration, "warning"),
            f"p95 latency above {t.p95_latency_milliseconds} ms",
        ),
        _rule(
            dsd,
            ALERTS[3],
            f"{_error_ratio(sel, '5m')} > {t.error_rate_percent:g}",
            (t.for_duration, "warning"),
            f"error rate above {t.error_rate_percent:g}%",
        ),
        _rule(
            dsd,
            ALERTS[4],
            f"{_error_ratio(sel, '1m')} > {circuit:g}",
            ("1m", "critical"),
            f"error rate above {circuit:g}%: circuit open",
        ),
    ]
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": metadata(dsd, dsd.name, "monitoring"),
        "spec": {"groups": [{"name": f"deepseek-{dsd.namespace}-{dsd.name}", "rules": rules}]},
    }
