"""Builds the FastAPI application: routes, error handlers, middleware and model loading.

``build_app(config, loader)`` returns an app whose lifespan runs ``loader()`` (which
builds and starts the engine: ``backends.load_model`` bound to the backend's options) in
the background, so ``/health`` answers at once and ``/ready`` turns true only when the
model is loaded. Probes: ``/health`` (alive), ``/ready`` (loaded and not draining),
``/metrics`` (Prometheus), ``/version``. Called by ``server.cli`` and by tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import logging
import platform
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from ..backends import LoadedModel
from .admission import AdmissionMiddleware
from .config import ServerConfig
from .errors import install_error_handlers
from .middleware import ServingMiddleware
from .openai_routes import build_openai_router
from .state import ServerState
from .v2_routes import build_v2_router

log = logging.getLogger("deepseek_runtime.server")


def _version() -> str:
    try:
        return importlib.metadata.version("deepseek-k8s")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


runtime_version = _version()

Loader = Callable[[], Awaitable[LoadedModel]]


def build_app(
    config: ServerConfig,
    loader: Loader,
    on_load_failure: Callable[[BaseException], None] | None = None,
) -> FastAPI:
    state = ServerState(config)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async def load() -> None:
            try:
                state.model = await loader()
                log.info("model loaded", extra={"model": state.model_name})
            except Exception as exc:
                state.load_error = str(exc)
                log.error("model failed to load: %s", exc)
                if on_load_failure is not None:
                    on_load_failure(exc)

        task = asyncio.create_task(load(), name="model-load")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
            if state.model is not None:
                await state.model.engine.shutdown()
            if state.audit is not None:
                state.audit.close()

    app = FastAPI(
        title="deepseek-runtime",
        version=runtime_version,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.serving = state
    install_error_handlers(app)

    @app.get("/health", tags=["probes"])
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready", tags=["probes"], response_model=None)
    async def ready() -> JSONResponse:
        body: dict[str, Any] = {
            "ready": state.ready,
            "model": state.model_name,
            "draining": state.draining,
        }
        if state.load_error:
            body["error"] = state.load_error
        return JSONResponse(body, status_code=200 if state.ready else 503)

    @app.get("/metrics", tags=["probes"], response_class=Response)
    async def metrics(request: Request) -> Response:
        if state.auth.metrics_guarded():  # the roles file's protect_metrics
            state.authenticate(request)
        return Response(
            state.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8"
        )

    @app.get("/version", tags=["probes"])
    async def version() -> dict[str, str]:
        return {
            "version": runtime_version,
            "engine": config.engine,
            "python": platform.python_version(),
        }

    app.include_router(build_openai_router(state))
    app.include_router(build_v2_router(state))
    app.add_middleware(
        AdmissionMiddleware,
        limit=config.max_inflight_requests,
        retry_after=config.retry_after_seconds,
        registry=state.metrics.registry,
    )
    app.add_middleware(ServingMiddleware, state=state)
    return app


def serving_state(app: FastAPI) -> ServerState:
    state: ServerState = app.state.serving
    return state
