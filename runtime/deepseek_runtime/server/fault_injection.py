"""Fault injection for tests: delay and fail a share of API requests (off by default).

Enabled only by ``deepseek-runtime serve --fault-injection error-rate=0.3,delay-ms=200``
(or ``DSR_FAULT_INJECTION``); the server logs a warning at start while it is on.
``token-delay-ms=N`` makes the runtime *slow* rather than failing: the engine's every
output update reaches the server N ms late (:class:`SlowedEngine`), so time to first
token, inter-token and end-to-end latency all grow, as on a revision that really is
slower; ``delay-ms`` alone is spent before the request reaches the engine and only
shows in ``http_request_duration_seconds``. The
operator never renders the flag for a DeepSeekDeployment: e2e tests start runtimes with it
to prove that the circuit breaker and canary analysis act on real 5xx and latency.

Only OpenAI API paths (``/v1/...``) are touched; probes and ``/metrics`` are not, so a
faulty pod stays Ready and keeps being scraped, the way a real partial failure looks. The
middleware sits inside :class:`.middleware.ServingMiddleware`, so injected errors are
counted in ``http_requests_total{status="500"}`` like any other.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from fastapi import FastAPI
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Receive, Scope, Send

from ..backends.loaded import LoadedModel
from ..engine.api import AsyncEngine, EngineStats, RequestOutput, SamplingParams
from .errors import error_body

log = logging.getLogger("deepseek_runtime.fault_injection")


@dataclass(frozen=True, slots=True)
class FaultSpec:
    """What to inject into each API request."""

    error_rate: float = 0.0
    """Share of requests answered with ``status`` instead of being served (0-1)."""
    delay_ms: int = 0
    """Delay before every API request is served or failed, milliseconds."""
    status: int = 500
    """HTTP status of an injected error (5xx)."""
    seed: int | None = None
    """Seed of the error draw (reproducible tests); None: random."""
    token_delay_ms: int = 0
    """Delay of every engine output update (each streamed token), milliseconds."""

    @property
    def active(self) -> bool:
        """True when the spec injects anything."""
        return self.error_rate > 0 or self.delay_ms > 0 or self.token_delay_ms > 0


def parse_fault_spec(text: str) -> FaultSpec:
    """Parse ``error-rate=0.3,delay-ms=200[,status=503][,seed=1]``.

    Raises:
        ValueError: for an unknown key or a value out of range.
    """
    fields: dict[str, float | int | None] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep:
            raise ValueError(f"--fault-injection: {part!r} is not key=value")
        try:
            if key == "error-rate":
                fields["error_rate"] = float(value)
            elif key == "delay-ms":
                fields["delay_ms"] = int(value)
            elif key == "token-delay-ms":
                fields["token_delay_ms"] = int(value)
            elif key == "status":
                fields["status"] = int(value)
            elif key == "seed":
                fields["seed"] = int(value)
            else:
                raise ValueError(
                    f"--fault-injection: unknown key {key!r} "
                    "(error-rate, delay-ms, token-delay-ms, status, seed)"
                )
        except ValueError as exc:
            if "unknown key" in str(exc):
                raise
            raise ValueError(f"--fault-injection: {key}={value!r} is not a number") from exc
    spec = FaultSpec(**fields)  # type: ignore[arg-type]
    if not 0 <= spec.error_rate <= 1:
        raise ValueError("--fault-injection: error-rate must be between 0 and 1")
    if not 0 <= spec.delay_ms <= 600_000:
        raise ValueError("--fault-injection: delay-ms must be between 0 and 600000")
    if not 0 <= spec.token_delay_ms <= 60_000:
        raise ValueError("--fault-injection: token-delay-ms must be between 0 and 60000")
    if not 500 <= spec.status <= 599:
        raise ValueError("--fault-injection: status must be a 5xx code")
    return spec


class FaultInjectionMiddleware:
    """Pure ASGI middleware applying a :class:`FaultSpec` to ``/v1/`` requests."""

    def __init__(self, app: ASGIApp, spec: FaultSpec) -> None:
        self.app = app
        self.spec = spec
        self.random = random.Random(spec.seed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope.get("path", "")).startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        if self.spec.delay_ms:
            await asyncio.sleep(self.spec.delay_ms / 1000)
        if self.random.random() < self.spec.error_rate:
            status = self.spec.status
            body = json.dumps(
                error_body(status, "injected fault (--fault-injection)", code="injected_fault")
            ).encode()
            headers = [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ]
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)


def install_fault_injection(app: FastAPI, spec: FaultSpec) -> None:
    """Add the middleware innermost (inside the metrics middleware); warn that it is on."""
    if not spec.active:
        return
    # user_middleware[0] is outermost; appending puts it under ServingMiddleware
    app.user_middleware.append(Middleware(FaultInjectionMiddleware, spec=spec))
    log.warning(
        "FAULT INJECTION ON: %.0f%% of /v1 requests fail with %d, each delayed %d ms, "
        "each output update %d ms (test only; never in production)",
        spec.error_rate * 100,
        spec.status,
        spec.delay_ms,
        spec.token_delay_ms,
        extra={
            "error_rate": spec.error_rate,
            "delay_ms": spec.delay_ms,
            "token_delay_ms": spec.token_delay_ms,
            "status": spec.status,
        },
    )


class SlowedEngine(AsyncEngine):
    """An engine whose output updates each arrive ``delay_s`` late (``token-delay-ms``)."""

    def __init__(self, inner: AsyncEngine, delay_s: float) -> None:
        self.inner = inner
        self.delay_s = delay_s

    async def start(self) -> None:
        await self.inner.start()

    async def shutdown(self) -> None:
        await self.inner.shutdown()

    def generate(
        self, request_id: str, prompt_token_ids: list[int], params: SamplingParams
    ) -> AsyncIterator[RequestOutput]:
        outputs = self.inner.generate(request_id, prompt_token_ids, params)  # may refuse now
        return self._slowed(outputs)

    async def _slowed(self, outputs: AsyncIterator[RequestOutput]) -> AsyncIterator[RequestOutput]:
        async for out in outputs:
            await asyncio.sleep(self.delay_s)
            yield out

    async def abort(self, request_id: str) -> None:
        await self.inner.abort(request_id)

    def stats(self) -> EngineStats:
        return self.inner.stats()

    @property
    def max_model_len(self) -> int:
        return self.inner.max_model_len


def slowed_loader(
    loader: Callable[[], Awaitable[LoadedModel]], spec: FaultSpec
) -> Callable[[], Awaitable[LoadedModel]]:
    """``loader``, its engine wrapped in :class:`SlowedEngine` when the spec asks for it."""
    if spec.token_delay_ms <= 0:
        return loader

    async def load() -> LoadedModel:
        model = await loader()
        return dataclasses.replace(
            model, engine=SlowedEngine(model.engine, spec.token_delay_ms / 1000)
        )

    return load
