"""``deepseek-runtime serve``: parse options, check the engine, run uvicorn with a graceful drain.

Signals: the first SIGTERM (or SIGINT) starts the drain — ``/ready`` answers 503, new API
requests get 503 with Retry-After, in-flight ones run to completion for up to
``--drain-timeout`` seconds — and then the server stops and the process exits 0. A
second signal stops at once. Called by the ``deepseek-runtime`` dispatcher
(``add_arguments`` / ``run``). On the worker nodes of a multi-node native group
(``--node-rank`` above 0) ``serve`` runs that node's ranks and answers health probes only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import uvicorn

from ..engine.kv_sizing import KVCacheOptionError
from .config import ServerConfig, add_config_arguments, config_from_args
from .fault_injection import (
    FaultSpec,
    install_fault_injection,
    parse_fault_spec,
    slowed_loader,
)
from .pii import RedactingFilter

if TYPE_CHECKING:
    from ..backends import BackendOptions

log = logging.getLogger("deepseek_runtime.server")


class JsonFormatter(logging.Formatter):
    """One JSON object per log line (time, level, logger, message, extras)."""

    _SKIP = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
        "message",
        "color_message",
    }

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in self._SKIP})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactingFilter())  # no e-mail, key or ID number reaches the logs
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument(
        "--fault-injection",
        default=os.environ.get("DSR_FAULT_INJECTION") or None,
        metavar="error-rate=R,delay-ms=N",
        help="TEST ONLY: fail a share of /v1 requests and delay them "
        "(e.g. error-rate=0.3,delay-ms=200[,status=503]); off by default",
    )


class DrainingServer(uvicorn.Server):
    """uvicorn.Server whose first SIGTERM drains instead of closing the listeners."""

    def __init__(self, config: uvicorn.Config, serving: Any, drain_timeout: float) -> None:
        super().__init__(config)
        self.serving = serving
        self.drain_timeout = drain_timeout
        self._drain_task: asyncio.Task[None] | None = None
        self.exit_code = 0

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)
        try:
            yield
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)

    def _on_signal(self, sig: int) -> None:
        if self._drain_task is not None:
            log.warning("second signal: stopping now")
            self.should_exit = True
            self.force_exit = True
            return
        log.info("signal %s: draining", signal.Signals(sig).name)
        self.serving.draining = True
        # answers from now on close their connection: keep-alive clients reconnect (and
        # find the port closed once the server is gone) instead of being reset mid-request
        self.server_state.default_headers = [
            *self.server_state.default_headers,
            (b"connection", b"close"),
        ]
        self._drain_task = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        deadline = time.monotonic() + self.drain_timeout
        while self.serving.inflight > 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if self.serving.inflight > 0:
            log.warning("drain timeout: %d request(s) still running", self.serving.inflight)
        self.should_exit = True

    def fail(self, exc: BaseException) -> None:
        """The model failed to load: stop with a non-zero exit code (2 for a KV cache
        option the engine cannot honour, such as a budget too small for one sequence)."""
        self.exit_code = 2 if isinstance(exc, KVCacheOptionError) else 1
        self.should_exit = True


async def serve(
    config: ServerConfig, options: BackendOptions, faults: FaultSpec | None = None
) -> int:
    from ..backends import load_model  # noqa: PLC0415
    from .app import build_app, serving_state  # noqa: PLC0415
    from .limits import connection_limits, cut_counter, guarded_protocol  # noqa: PLC0415

    holder: dict[str, DrainingServer] = {}

    def on_failure(exc: BaseException) -> None:
        holder["server"].fail(exc)

    loader = functools.partial(load_model, options)
    app = build_app(config, slowed_loader(loader, faults) if faults else loader, on_failure)
    if faults is not None:
        install_fault_injection(app, faults)
    state = serving_state(app)
    uv_config = uvicorn.Config(
        app,
        host=config.host,
        port=config.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=5,
        log_level=config.log_level,
        lifespan="on",
        http=guarded_protocol(connection_limits(config), cut_counter(state.metrics.registry)),
    )
    server = DrainingServer(uv_config, state, config.drain_timeout)
    holder["server"] = server
    grpc_server = None
    if config.grpc_port is not None:
        # needs grpcio + tritonclient (for the KServe protos): only when asked for
        from .grpc_v2 import start_grpc_server  # noqa: PLC0415

        grpc_server = await start_grpc_server(state, config.host, config.grpc_port)
    try:
        await server.serve()
    finally:
        if grpc_server is not None:
            await grpc_server.stop(grace=1.0)
    log.info("stopped")
    return server.exit_code


def run(args: argparse.Namespace) -> int:
    try:
        config = config_from_args(args)
        text = getattr(args, "fault_injection", None)
        faults = parse_fault_spec(text) if text else None
    except ValueError as exc:
        print(f"deepseek-runtime serve: {exc}", file=sys.stderr)
        return 2
    setup_logging(config.log_level)
    from ..backends import EngineUnavailable, check_available, require_package  # noqa: PLC0415
    from .backend_options import backend_options  # noqa: PLC0415

    try:
        options = backend_options(config)
        check_available(options)
        if config.grpc_port is not None:
            require_package(
                "--grpc-port",
                "tritonclient.grpc",
                "pip install 'tritonclient[grpc]' (the KServe v2 gRPC face uses its protos)",
            )
        if not Path(config.model).is_dir():
            raise ValueError(f"--model {config.model}: no such directory")
        if config.engine == "native" and config.node_rank > 0:
            from ..backends.native import serve_worker_node  # noqa: PLC0415

            return serve_worker_node(options, config.host, config.port)  # type: ignore[arg-type]
        return asyncio.run(serve(config, options, faults))
    except (EngineUnavailable, ValueError) as exc:
        print(f"deepseek-runtime serve: {exc}", file=sys.stderr)
        return 2
