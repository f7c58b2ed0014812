"""``spec.serving`` and ``spec.monitoring``: API protection and observability.

Serving settings reach the runtime as environment variables (and files: API keys, the
JWKS and the roles file are mounted from their Secret or ConfigMap, so the runtime's
hot-reload sees their updates); monitoring renders a
ServiceMonitor and a PrometheusRule (``monitoring.coreos.com/v1``) whose alerts link to
the runbooks under ``docs/runbooks/``.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field, model_validator

from deepseek_operator.api import defaults
from deepseek_operator.api.base import ApiModel
from deepseek_operator.api.model import KubeName, SecretKeyReference
from deepseek_operator.api.scaling import Duration
from deepseek_operator.api.validation import Rule

JWT_RULES: tuple[Rule, ...] = (
    Rule(
        rule="has(self.jwksSecretRef) != has(self.jwksUri)",
        message="serving.auth.jwt needs exactly one of jwksSecretRef and jwksUri",
    ),
)


class JwtAuthSpec(ApiModel):
    """Bearer JWT (OIDC access token) verification by the runtime: RS256, ES256 or EdDSA
    signatures, ``iss``, ``aud``, ``exp`` / ``nbf`` with 30 s of leeway, keys by ``kid``."""

    cel_rules: ClassVar[tuple[Rule, ...]] = JWT_RULES

    issuer: Annotated[str, Field(min_length=1, max_length=512)]
    """Required ``iss`` claim (the identity provider's issuer URL)."""
    audience: Annotated[str, Field(min_length=1, max_length=512)]
    """Required ``aud`` claim (this API's client or resource id)."""
    jwks_secret_ref: SecretKeyReference | None = None
    """Secret key holding the provider's JWKS (JSON; key ``jwks.json`` by default), mounted
    under /etc/deepseek/jwks; an updated Secret is picked up without a restart."""
    jwks_uri: Annotated[str, Field(max_length=2048, pattern=r"^https?://[^\s]+$")] | None = None
    """The provider's JWKS URL (``jwks_uri`` of its OIDC discovery document), fetched every
    5 minutes and on a token with an unknown ``kid``."""

    @model_validator(mode="after")
    def _one_key_source(self) -> JwtAuthSpec:
        if (self.jwks_secret_ref is None) == (self.jwks_uri is None):
            raise ValueError(JWT_RULES[0].message)
        return self


class RolesReference(ApiModel):
    """A ConfigMap or Secret key holding the runtime's roles file."""

    kind: Literal["ConfigMap", "Secret"] = "ConfigMap"
    """Kind of the object holding the file."""
    name: KubeName
    """Name of the ConfigMap or Secret."""
    key: Annotated[str, Field(min_length=1, max_length=253)] = "roles.yaml"
    """Key holding the roles file (YAML or JSON)."""


class AuthSpec(ApiModel):
    """Authentication (API keys, JWTs) and authorization (roles) in the runtime."""

    api_keys_secret_ref: SecretKeyReference | None = None
    """Secret key holding accepted API keys, one per line. Open access when omitted (and
    no ``jwt`` or ``rolesRef`` is set)."""
    jwt: JwtAuthSpec | None = None
    """Accept bearer JWTs besides API keys. Enforced by deepseek-runtime: needs
    ``engine.kind`` native or triton."""
    roles_ref: RolesReference | None = None
    """Principals and roles (docs/security.md): which keys and JWT claims may call which
    endpoints and models, with per-principal request and token limits. Mounted under
    /etc/deepseek/roles and hot-reloaded. Needs ``engine.kind`` native or triton."""


class RateLimitSpec(ApiModel):
    """Per-principal rate limits enforced by the runtime (the roles file may set its own)."""

    requests_per_second: Annotated[float, Field(gt=0, le=1000000)] | None = None
    """Requests per second per key or principal."""
    tokens_per_minute: Annotated[int, Field(ge=1)] | None = None
    """Prompt plus completion tokens per minute per key or principal."""


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
    """API keys, JWTs and roles."""
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
