"""ASGI middleware around every HTTP request: drain, body size, in-flight count, HTTP
metrics, the audit line.

- While draining (after SIGTERM) every route but the probes and ``/metrics`` gets 503.
- A body beyond ``max_body_bytes`` gets 413 (by Content-Length, or while it streams in).
- Guarded routes (``server.auth.endpoint_of``) are authenticated and authorized here,
  from the headers, before the body is read: 401 / 403 come before any 400 or 413 by
  body size, and a stranger cannot probe request validation.
- ``ServerState.inflight`` counts API requests until their last byte is sent, so the
  drain waits for streams to end.
- ``http_requests_total`` / ``http_request_duration_seconds`` by route template.
- One audit line per API request (not the probes), written after the last byte from the
  context and principal that ``ServerState.begin`` / ``authenticate`` left in the
  request's scope, so refusals (401, 403, 413, 429) and streams are logged exactly once.

Installed by ``server.app``. Pure ASGI (no BaseHTTPMiddleware) so streams are not buffered.
"""

from __future__ import annotations

import json
import time
from typing import Any

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import APIError, error_body
from .state import SCOPE_CONTEXT, SCOPE_PRINCIPAL, ServerState

EXEMPT = frozenset(
    {"/health", "/ready", "/metrics", "/version", "/v2/health/live", "/v2/health/ready"}
)


class _TooLarge(HTTPException):
    """Raised from ``receive``; FastAPI re-raises HTTPExceptions from body parsing."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body is larger than {limit} bytes")


async def _send_error(
    send: Send, status: int, message: str, code: str, headers: dict[str, str] | None = None
) -> None:
    body = json.dumps(error_body(status, message, code=code)).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class ServingMiddleware:
    def __init__(self, app: ASGIApp, state: ServerState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = self.state
        path: str = scope["path"]
        exempt = path in EXEMPT
        if state.draining and not exempt:
            await _send_error(
                send, 503, "server is shutting down", "shutting_down", state.retry_headers()
            )
            state.write_audit("unrouted", 503, None, None)
            return
        limit = state.config.max_body_bytes
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    too_big = int(value) > limit
                except ValueError:
                    too_big = False
                if too_big:
                    await _send_error(
                        send, 413, f"request body is larger than {limit} bytes", "body_too_large"
                    )
                    state.write_audit("unrouted", 413, None, None)
                    return
        try:
            state.authenticate_scope(scope)
        except APIError as exc:
            await _send_error(send, exc.status, exc.message, exc.code or "auth", exc.headers)
            if not exempt:
                principal = scope.get("state", {}).get(SCOPE_PRINCIPAL)
                state.write_audit(path[:200], exc.status, None, principal)
            return
        seen = 0
        status_holder: dict[str, Any] = {"status": 500, "started": False}

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _TooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                status_holder["started"] = True
            await send(message)

        started = time.perf_counter()
        scope_state: dict[str, Any] = scope.setdefault("state", {})
        if not exempt:
            state.inflight += 1
        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not status_holder["started"]:
                status_holder["status"] = 413
                await _send_error(
                    send, 413, f"request body is larger than {limit} bytes", "body_too_large"
                )
        finally:
            if not exempt:
                state.inflight -= 1
            route = scope.get("route")
            handler = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "")
            m = state.metrics
            m.http_requests.labels(handler, method, str(status_holder["status"])).inc()
            m.http_latency.labels(handler, method).observe(time.perf_counter() - started)
            if not exempt:
                state.write_audit(
                    handler,
                    status_holder["status"],
                    scope_state.get(SCOPE_CONTEXT),
                    scope_state.get(SCOPE_PRINCIPAL),
                    started,
                )
