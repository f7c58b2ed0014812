"""``spec.serving`` and ``spec.monitoring``: API protection and observability.

Serving settings reach the runtime as environment variables; monitoring renders a
ServiceMonitor and a PrometheusRule (``monitoring.coreos.com/v1``) whose alerts link to
the runbooks under ``docs/runbooks/``.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from deepseek_operator.api import defaults
from deepseek_operator.api.base import ApiModel
from deepseek_operator.api.model import KubeName, SecretKeyReference
from deepseek_operator.api.scaling import Duration


class AuthSpec(ApiModel):
    """API key authentication."""

    api_keys_secret_ref: SecretKeyReference | None = None
    """Secret key holding accepted API keys, one per line. Open access when omitted."""


class RateLimitSpec(ApiModel):
    """Per-key rate limits enforced by the runtime."""

    requests_per_second: Annotated[float, Field(gt=0, le=1000000)] | None = None
    """Requests per second per key."""
    tokens_per_minute: Annotated[int, Field(ge=1)] | None = None
    """Prompt plus completion tokens per minute per key."""


class FilterPolicyReference(ApiModel):
    """A ConfigMap key holding a content policy."""

    name: KubeName
    """Name of the ConfigMap."""
    key: Annotated[str, Field(min_length=1, max_length=253)] = "policy.yaml"
    """Key holding the policy (YAML or JSON)."""


class ContentFilterSpec(ApiModel):
    """Content filtering of prompts and completions."""

    config_map_ref: FilterPolicyReference | None = None
    """ConfigMap key holding the runtime's content policy (YAML or JSON), mounted
    read-only under /etc/deepseek/filter and passed as ``DSR_CONTENT_FILTER``."""


class ServingSpec(ApiModel):
    """API protection in the runtime."""

    auth: AuthSpec = Field(default_factory=AuthSpec)
    """API keys."""
    rate_limit: RateLimitSpec = Field(default_factory=RateLimitSpec)
    """Rate limits."""
    content_filter: ContentFilterSpec = Field(default_factory=ContentFilterSpec)
    """Content filter."""


class AlertThresholds(ApiModel):
    """Alert thresholds of the rendered PrometheusRule."""

    gpu_utilization_percent: Annotated[float, Field(gt=0, le=100)] = (
        defaults.ALERT_GPU_UTILIZATION_PERCENT
    )
    """GPU utilisation (DCGM) above which GPUSaturated fires."""
    gpu_utilization_for: Duration = defaults.ALERT_GPU_UTILIZATION_FOR
    """How long GPU utilisation must stay above the threshold."""
    kv_cache_fragmentation_percent: Annotated[float, Field(gt=0, le=100)] = (
        defaults.ALERT_KV_FRAGMENTATION_PERCENT
    )
    """Share of allocated KV cache blocks left unused by their sequences."""
    p95_latency_milliseconds: Annotated[int, Field(ge=1, le=3600000)] = (
        defaults.ALERT_P95_LATENCY_MILLISECONDS
    )
    """p95 end-to-end request latency."""
    error_rate_percent: Annotated[float, Field(gt=0, le=100)] = defaults.ALERT_ERROR_RATE_PERCENT
    """Share of requests answered with 5xx."""
    for_duration: Duration = Field(default=defaults.ALERT_FOR, alias="for")
    """How long the other conditions must hold before their alert fires."""


class AlertsSpec(ApiModel):
    """Prometheus alert rules."""

    enabled: bool = True
    """Render a PrometheusRule."""
    runbook_base_url: Annotated[str, Field(max_length=512)] = Field(
        default=defaults.RUNBOOK_BASE_URL, alias="runbookBaseURL"
    )
    """Base of the ``runbook_url`` annotations; ``<alert>.md`` is appended."""
    thresholds: AlertThresholds = Field(default_factory=AlertThresholds)
    """Alert thresholds."""


class ServiceMonitorSpec(ApiModel):
    """Scraping of the serving pods."""

    enabled: bool = True
    """Render a ServiceMonitor."""
    interval: Duration = defaults.SCRAPE_INTERVAL
    """Scrape interval."""


class MonitoringSpec(ApiModel):
    """Observability."""

    service_monitor: ServiceMonitorSpec = Field(default_factory=ServiceMonitorSpec)
    """ServiceMonitor."""
    alerts: AlertsSpec = Field(default_factory=AlertsSpec)
    """PrometheusRule."""
    prometheus_address: Annotated[str, Field(max_length=512)] = Field(
        default=defaults.PROMETHEUS_ADDRESS, alias="prometheusAddress"
    )
    """Prometheus queried by canary analysis and KEDA triggers."""
