"""Everything one server process holds: the loaded model, the guards and the drain flag.

``ServerState`` is created by ``server.app.build_app`` and shared by the routes. Its
``begin`` runs the checks every API request passes before work starts (draining → 503,
model not loaded → 503, credentials → 401, roles → 403: ``server.auth``) and ``admit``
applies the principal's quotas (→ 429 with Retry-After: ``server.quotas``). ``finish``
settles the token quota with the actual usage and, for gRPC, writes the audit line; an
HTTP request's line is written by ``server.middleware`` once the last byte is sent, from
the context and principal ``begin`` / ``authenticate`` leave in the request's scope.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

from fastapi import Request
from starlette.types import Scope

from ..backends import LoadedModel
from ..engine.api import EngineStats
from ..engine.kv_sizing import KVCacheSizing
from .audit import AuditLog
from .auth import Authenticator, endpoint_of
from .config import ServerConfig
from .content_filter import ContentFilter
from .errors import APIError
from .metrics import ServerMetrics
from .quotas import QuotaLimiter, Reservation
from .roles import Principal

__all__ = ["LoadedModel", "RequestContext", "ServerState"]  # LoadedModel: what ServerState holds

_AUTH_HEADERS = (b"authorization", b"x-api-key")
_ID_PREFIX = {"/v1/completions": "cmpl", "/v1/chat/completions": "chatcmpl"}
SCOPE_CONTEXT = "dsr_context"  # request.state keys the audit middleware reads
SCOPE_PRINCIPAL = "dsr_principal"
SCOPE_AUTHORIZED = "dsr_authorized"  # the middleware authorized the route before the body


@dataclass(slots=True)
class RequestContext:
    """Per-request bookkeeping for quotas and the audit log."""

    request_id: str
    principal: Principal
    endpoint: str
    started: float = field(default_factory=time.perf_counter)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str | None = None
    prompt_text: str | None = None
    reservation: Reservation | None = None  # set when the quotas admitted the request
    status: int | None = None  # set by ``finish``
    deferred: bool = False  # the HTTP middleware writes the audit line


class ServerState:
    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.model_name = config.model_name
        self.model: LoadedModel | None = None
        self.load_error: str | None = None
        self.draining = False
        self.inflight = 0
        self.auth = Authenticator.from_config(config)
        self.quotas = QuotaLimiter()
        self.content_filter = (
            ContentFilter.from_file(config.content_filter) if config.content_filter else None
        )
        self.audit = (
            AuditLog(config.audit_log, log_prompts=config.log_prompts) if config.audit_log else None
        )
        self.metrics = ServerMetrics(self.model_name, self.engine_stats, self.kv_cache_sizing)

    def kv_cache_sizing(self) -> KVCacheSizing | None:
        return None if self.model is None else self.model.kv_cache

    def engine_stats(self) -> EngineStats | None:
        if self.model is None:
            return None
        try:
            return self.model.engine.stats()
        except Exception:  # a remote engine may be unreachable; skip the series
            return None

    @property
    def ready(self) -> bool:
        return self.model is not None and not self.draining

    def retry_headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.config.retry_after_seconds)}

    def require_model(self) -> LoadedModel:
        if self.draining:
            raise APIError(
                503, "server is shutting down", code="shutting_down", headers=self.retry_headers()
            )
        if self.model is None:
            msg = "model is still loading" if self.load_error is None else "model failed to load"
            raise APIError(503, msg, code="not_ready", headers=self.retry_headers())
        return self.model

    def authenticate_scope(self, scope: Scope) -> Principal | None:
        """Authenticate and authorize a guarded route from its headers, before its body is
        read (so a stranger gets 401, not a validation error); None: not guarded."""
        endpoint = endpoint_of(scope["path"])
        if endpoint is None or (endpoint == "metrics" and not self.auth.metrics_guarded()):
            return None
        headers = {k: v for k, v in scope.get("headers", []) if k in _AUTH_HEADERS}
        authorization, api_key = (headers.get(h) for h in _AUTH_HEADERS)
        principal = self.auth.authenticate(
            authorization.decode("latin-1") if authorization else None,
            api_key.decode("latin-1") if api_key else None,
        )
        state = scope.setdefault("state", {})
        state[SCOPE_PRINCIPAL] = principal
        self.auth.authorize(principal, endpoint, self.model_name)
        state[SCOPE_AUTHORIZED] = True
        return principal

    def authenticate(self, request: Request) -> Principal:
        """The caller's principal (401), allowed on this route and model (403)."""
        principal = getattr(request.state, SCOPE_PRINCIPAL, None)
        if principal is not None and getattr(request.state, SCOPE_AUTHORIZED, False):
            return principal  # type: ignore[no-any-return]
        principal = self.auth.authenticate(
            request.headers.get("authorization"), request.headers.get("x-api-key")
        )
        setattr(request.state, SCOPE_PRINCIPAL, principal)
        self.auth.authorize(principal, endpoint_of(request.scope["path"]), self.model_name)
        return principal

    def authenticate_headers(
        self, authorization: str | None, api_key: str | None, endpoint: str | None = "v2"
    ) -> Principal:
        """As :meth:`authenticate`, from header values (the gRPC face's metadata)."""
        principal = self.auth.authenticate(authorization, api_key)
        self.auth.authorize(principal, endpoint, self.model_name)
        return principal

    def begin(self, request: Request, endpoint: str) -> tuple[LoadedModel, RequestContext]:
        model = self.require_model()
        ctx = self.context(self.authenticate(request), endpoint)
        ctx.deferred = True
        setattr(request.state, SCOPE_CONTEXT, ctx)
        return model, ctx

    def context(self, principal: Principal, endpoint: str) -> RequestContext:
        prefix = _ID_PREFIX.get(endpoint, "req")
        return RequestContext(f"{prefix}-{uuid.uuid4().hex}", principal, endpoint)

    def check_model_name(self, name: str) -> None:
        if name != self.model_name:
            raise APIError(
                400,
                f"model {name!r} is not served here; use {self.model_name!r}",
                param="model",
                code="model_not_found",
            )

    def admit(self, ctx: RequestContext, prompt_tokens: int, max_new_tokens: int = 0) -> None:
        """Charge the quotas (tokens: the prompt + ``max_new_tokens`` estimate) or 429."""
        p = ctx.principal
        wait, reservation = self.quotas.admit(p.name, p.limits, prompt_tokens + max_new_tokens)
        if wait:
            raise APIError(
                429,
                f"rate limit exceeded for principal {p.name!r}",
                code="rate_limit_exceeded",
                headers={"Retry-After": str(wait)},
            )
        ctx.reservation = reservation

    def finish(self, ctx: RequestContext, status: int) -> None:
        """Settle the token quota with the actual usage; once per request."""
        if ctx.status is not None:
            return
        ctx.status = status
        if ctx.reservation is not None:
            actual = ctx.prompt_tokens + ctx.completion_tokens
            self.quotas.settle(ctx.reservation, ctx.principal.limits, actual)
        if not ctx.deferred:
            self.write_audit(ctx.endpoint, status, ctx, ctx.principal)

    def write_audit(
        self,
        endpoint: str,
        status: int,
        ctx: RequestContext | None,
        principal: Principal | None,
        started: float | None = None,
    ) -> None:
        """One audit line (no-op without ``--audit-log``)."""
        if self.audit is None:
            return
        begun = ctx.started if ctx is not None else started or time.perf_counter()
        self.audit.record(
            request_id=ctx.request_id if ctx else f"req-{uuid.uuid4().hex}",
            principal=principal.name if principal else None,
            key_id=principal.key_id if principal else None,
            subject=principal.subject if principal else None,
            model=self.model_name,
            endpoint=ctx.endpoint if ctx else endpoint,
            status=ctx.status if ctx and ctx.status is not None else status,
            prompt_tokens=ctx.prompt_tokens if ctx else 0,
            completion_tokens=ctx.completion_tokens if ctx else 0,
            finish_reason=ctx.finish_reason if ctx else None,
            latency_ms=round((time.perf_counter() - begun) * 1000, 2),
            prompt=ctx.prompt_text if ctx else None,
        )
