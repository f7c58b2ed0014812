"""Admission control at the HTTP layer: at most ``limit`` API requests in the server at once.

The engine bounds its own queue (``--max-waiting``, beyond it 429), but a request spends
time in the server before it reaches the engine — its body is read and parsed, its prompt
rendered and tokenized — and after, while its answer streams. Without a bound, a flood
of clients (or of large bodies) grows memory without limit before the engine can refuse
anything. ``AdmissionMiddleware`` counts API requests from their first byte to their last
and answers 503 with ``Retry-After`` beyond ``--max-inflight-requests``, before reading
the body; probes and ``/metrics`` are never refused. Refusals are counted in
``dsr:requests_refused_total{reason="inflight_limit"}``.

Installed by ``server.app`` inside ``ServingMiddleware`` (so the drain and body-size
checks run first and the HTTP metrics see the 503s).
"""

from __future__ import annotations

import json

from prometheus_client import CollectorRegistry, Counter
from starlette.types import ASGIApp, Receive, Scope, Send

from .errors import error_body

EXEMPT_PREFIXES = ("/health", "/ready", "/metrics", "/version", "/v2/health/")


class AdmissionMiddleware:
    """Pure ASGI: refuse API requests beyond ``limit`` in flight with 503 + Retry-After."""

    def __init__(
        self,
        app: ASGIApp,
        limit: int,
        retry_after: int,
        registry: CollectorRegistry | None = None,
    ) -> None:
        if limit < 1:
            raise ValueError("limit must be >= 1")
        self.app = app
        self.limit = limit
        self.inflight = 0
        body = error_body(
            503, "server is at its request limit; retry later", code="server_overloaded"
        )
        self._body = json.dumps(body).encode()
        self._headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(self._body)).encode()),
            (b"retry-after", str(retry_after).encode()),
            # the request's body is never read, so the connection cannot carry another
            # request: say so, or a keep-alive client reuses it and meets a bare close
            (b"connection", b"close"),
        ]
        self._refused = Counter(
            "dsr:requests_refused",
            "API requests refused before the engine saw them.",
            ["reason"],
            registry=registry,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(EXEMPT_PREFIXES):
            await self.app(scope, receive, send)
            return
        if self.inflight >= self.limit:
            self._refused.labels("inflight_limit").inc()
            await send({"type": "http.response.start", "status": 503, "headers": self._headers})
            await send({"type": "http.response.body", "body": self._body})
            return
        self.inflight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.inflight -= 1
