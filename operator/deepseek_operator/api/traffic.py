"""``spec.traffic`` and ``spec.resilience``: routing, retries, outlier ejection and probes.

Traffic and circuit-breaker fields map one to one onto Istio's VirtualService and
DestinationRule (``networking.istio.io/v1``) so their documentation applies; probe fields
onto the core/v1 Probe of the engine container.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field

from deepseek_operator.api import defaults
from deepseek_operator.api.base import ApiModel
from deepseek_operator.api.model import KubeName
from deepseek_operator.api.scaling import Duration
from deepseek_operator.api.validation import LIST_SET, unique_items

HostName = Annotated[str, Field(max_length=253)]


class IstioSpec(ApiModel):
    """Istio routing for the served model."""

    gateways: Annotated[list[HostName], Field(max_length=16), AfterValidator(unique_items)] = Field(
        default_factory=list, json_schema_extra=LIST_SET
    )
    """Gateways (``namespace/name``) the VirtualService binds to, besides the mesh."""
    hosts: Annotated[list[HostName], Field(max_length=16), AfterValidator(unique_items)] = Field(
        default_factory=list, json_schema_extra=LIST_SET
    )
    """External host names served through the gateways."""


class RetrySpec(ApiModel):
    """Retry policy of the VirtualService route."""

    attempts: Annotated[int, Field(ge=0, le=10)] = defaults.RETRY_ATTEMPTS
    """Retries per request (0 disables)."""
    per_try_timeout: Duration = defaults.RETRY_PER_TRY_TIMEOUT
    """Timeout of each try."""
    retry_on: Annotated[str, Field(max_length=256)] = defaults.RETRY_ON
    """Envoy retry conditions. The default retries only failures before a response
    started, so a generation is never sent twice."""


class NetworkPolicySpec(ApiModel):
    """Ingress NetworkPolicy of the serving pods."""

    enabled: bool = True
    """Render a NetworkPolicy admitting only the allowed peers."""
    allowed_namespaces: Annotated[
        list[HostName], Field(max_length=32), AfterValidator(unique_items)
    ] = Field(default_factory=list, json_schema_extra=LIST_SET)
    """Namespaces (by name) allowed to call the API, besides the DSD's own namespace and
    the monitoring and istio-system namespaces."""


class TrafficSpec(ApiModel):
    """Routing of client traffic."""

    istio: IstioSpec | None = None
    """Render an Istio VirtualService and DestinationRule; required for canary rollouts."""
    timeout: Duration = defaults.REQUEST_TIMEOUT
    """Whole-request timeout (long generations stream for minutes)."""
    retries: RetrySpec = Field(default_factory=RetrySpec)
    """Retry policy."""
    network_policy: NetworkPolicySpec = Field(default_factory=NetworkPolicySpec)
    """Ingress NetworkPolicy."""


class CircuitBreakerSpec(ApiModel):
    """Outlier ejection and connection limits (Istio DestinationRule)."""

    consecutive_5xx_errors: Annotated[int, Field(ge=1, le=1000)] = Field(
        default=defaults.CONSECUTIVE_5XX_ERRORS, alias="consecutive5xxErrors"
    )
    """Consecutive 5xx responses after which a pod is ejected from the load balancer."""
    interval: Duration = defaults.EJECTION_INTERVAL
    """Time between ejection sweeps."""
    base_ejection_time: Duration = defaults.BASE_EJECTION_TIME
    """Minimum ejection time, multiplied by the number of ejections."""
    max_ejection_percent: Annotated[int, Field(ge=0, le=100)] = defaults.MAX_EJECTION_PERCENT
    """Most pods ejected at once, in percent."""
    max_pending_requests: Annotated[int, Field(ge=1, le=1000000)] = defaults.MAX_PENDING_REQUESTS
    """Requests queued towards the pods before new ones fail fast with 503."""
    error_rate_percent: Annotated[float, Field(gt=0, le=100)] = defaults.CIRCUIT_ERROR_RATE_PERCENT
    """Error rate (percent 5xx over ``window``) above which a track's circuit opens: the
    operator moves that track's traffic in the VirtualService to the healthy track or to
    ``fallback``, sets Degraded=True and posts an Event; the CircuitOpen alert fires."""
    window: Duration = defaults.CIRCUIT_WINDOW
    """Window of the error-rate query, evaluated every operator interval."""
    cool_down: Duration = defaults.CIRCUIT_COOL_DOWN
    """Time an open circuit stays open before it goes half-open."""
    half_open_percent: Annotated[int, Field(ge=1, le=100)] = defaults.CIRCUIT_HALF_OPEN_PERCENT
    """Percent of traffic a half-open track gets back (at most its normal share)."""
    close_after: Duration = defaults.CIRCUIT_CLOSE_AFTER
    """Time a half-open track must stay under the threshold before the circuit closes."""
    fallback: KubeName | None = None
    """Another DeepSeekDeployment in this namespace (e.g. a smaller distill) whose API
    Service takes the traffic of an open circuit when no healthy track is left."""


class HealthSpec(ApiModel):
    """Probes of the engine container."""

    period_seconds: Annotated[int, Field(ge=1, le=3600)] = defaults.PROBE_PERIOD_SECONDS
    """Liveness and readiness probe period."""
    failure_threshold: Annotated[int, Field(ge=1, le=100)] = defaults.PROBE_FAILURE_THRESHOLD
    """Failed liveness probes before the container is restarted."""
    timeout_seconds: Annotated[int, Field(ge=1, le=600)] = defaults.PROBE_TIMEOUT_SECONDS
    """Timeout of each probe."""
    startup_timeout: Duration | None = None
    """Longest time a pod may take to load weights before it is restarted. Scaled from the
    checkpoint size when omitted (about 10 min plus 1 min per 20 GB per GPU)."""


class ResilienceSpec(ApiModel):
    """Failure handling."""

    circuit_breaker: CircuitBreakerSpec = Field(default_factory=CircuitBreakerSpec)
    """Outlier ejection and connection limits."""
    health: HealthSpec = Field(default_factory=HealthSpec)
    """Probes."""
