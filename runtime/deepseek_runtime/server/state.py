"""Everything one server process holds: the loaded model, the guards and the drain flag.

``ServerState`` is created by ``server.app.build_app`` and shared by the routes. Its
``begin`` runs the checks every API request passes before work starts (draining → 503,
model not loaded → 503, API key → 401) and ``admit`` applies the per-key rate limits
(→ 429 with Retry-After). ``finish`` writes the audit line and charges generated tokens.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

from fastapi import Request

from ..backends import LoadedModel
from ..engine.api import EngineStats
from ..engine.kv_sizing import KVCacheSizing
from .audit import AuditLog
from .auth import KeyStore, RateLimiter, read_keys
from .config import ServerConfig
from .content_filter import ContentFilter
from .errors import APIError
from .metrics import ServerMetrics

__all__ = ["LoadedModel", "RequestContext", "ServerState"]  # LoadedModel: what ServerState holds

_ID_PREFIX = {"/v1/completions": "cmpl", "/v1/chat/completions": "chatcmpl"}


@dataclass(slots=True)
class RequestContext:
    """Per-request bookkeeping for the audit log."""

    request_id: str
    key_id: str
    endpoint: str
    started: float = field(default_factory=time.perf_counter)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str | None = None
    prompt_text: str | None = None


class ServerState:
    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.model_name = config.model_name
        self.model: LoadedModel | None = None
        self.load_error: str | None = None
        self.draining = False
        self.inflight = 0
        self.keys = KeyStore(read_keys(config.api_keys_file, config.api_keys))
        self.limiter = RateLimiter(config.rate_limit_rps, config.rate_limit_tpm)
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

    def authenticate(self, request: Request) -> str:
        return self.authenticate_headers(
            request.headers.get("authorization"), request.headers.get("x-api-key")
        )

    def authenticate_headers(self, authorization: str | None, api_key: str | None) -> str:
        """Key id for ``Authorization: Bearer KEY`` (or ``x-api-key``); 401 otherwise."""
        presented: str | None = None
        if authorization and authorization[:7].lower() == "bearer ":
            presented = authorization[7:].strip()
        elif api_key:
            presented = api_key.strip()
        key = self.keys.identify(presented)
        if key is None:
            raise APIError(
                401,
                "missing or invalid API key",
                code="invalid_api_key",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return key

    def begin(self, request: Request, endpoint: str) -> tuple[LoadedModel, RequestContext]:
        model = self.require_model()
        return model, self.context(self.authenticate(request), endpoint)

    def context(self, key_id: str, endpoint: str) -> RequestContext:
        prefix = _ID_PREFIX.get(endpoint, "req")
        return RequestContext(f"{prefix}-{uuid.uuid4().hex}", key_id, endpoint)

    def check_model_name(self, name: str) -> None:
        if name != self.model_name:
            raise APIError(
                400,
                f"model {name!r} is not served here; use {self.model_name!r}",
                param="model",
                code="model_not_found",
            )

    def admit(self, ctx: RequestContext, tokens: int) -> None:
        wait = self.limiter.admit(ctx.key_id, tokens)
        if wait:
            raise APIError(
                429,
                "rate limit exceeded for this API key",
                code="rate_limit_exceeded",
                headers={"Retry-After": str(wait)},
            )

    def finish(self, ctx: RequestContext, status: int) -> None:
        self.limiter.charge_tokens(ctx.key_id, ctx.completion_tokens)
        if self.audit is None:
            return
        self.audit.record(
            request_id=ctx.request_id,
            key_id=ctx.key_id,
            model=self.model_name,
            endpoint=ctx.endpoint,
            status=status,
            prompt_tokens=ctx.prompt_tokens,
            completion_tokens=ctx.completion_tokens,
            finish_reason=ctx.finish_reason,
            latency_ms=round((time.perf_counter() - ctx.started) * 1000, 2),
            prompt=ctx.prompt_text,
        )
