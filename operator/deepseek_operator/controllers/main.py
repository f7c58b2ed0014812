"""Entry point of ``deepseek-operator run``: options, kopf settings, logging, startup.

Called by :func:`deepseek_operator.cli.main` (``run`` subcommand → :func:`run`) and by
``python -m deepseek_operator.controllers``.  It builds one :class:`.kube.Kube`
client and the :class:`.context.HandlerContext` around it, registers the handlers of
:mod:`.handlers` into a private kopf registry, and runs kopf's reactor (with the context
in its memo) until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import logging
import os
import random
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import kopf
import structlog

from .context import HandlerContext
from .handlers import register
from .kinds import LEADER_WORKER_SET
from .kube import Kube
from .loops import register_loops

PEERING_NAME = "deepseek-operator"


@dataclass(frozen=True, slots=True)
class OperatorOptions:
    """Options of a running operator (each has a ``run`` flag of the same name)."""

    kubeconfig: str | None = None
    """Path of a kubeconfig; default: in-cluster config, else ``~/.kube/config``."""
    namespaces: tuple[str, ...] = ()
    """Watch only these namespaces; empty: the whole cluster. Globs (``team-*``) make kopf
    list/watch namespaces and CRDs, which the namespaced RBAC must then allow."""
    peering: str = PEERING_NAME
    """Name of the (Cluster)KopfPeering object used to coordinate replicas (HA)."""
    standalone: bool = False
    """Run without peering (tests and development)."""
    priority: int = 0
    """Peering priority; the highest-priority live replica works, others stand by.
    Replicas with equal priorities would all freeze, hence ``--priority=auto``."""
    peering_lifetime: int = 60
    """Seconds a replica's peering heartbeat stays valid; a standby takes over after it."""
    liveness: str | None = None
    """Liveness endpoint such as ``http://0.0.0.0:8080/healthz``; off when None."""
    resync_seconds: float = 30.0
    """Period of the per-DSD resync timer (inventory re-plan and status repair), seconds."""
    workers: int = 8
    """Threads that run the synchronous handlers."""
    prometheus_url: str | None = None
    """Prometheus for the native autoscaler and the circuit breaker; None: each DSD's
    ``monitoring.prometheusAddress``."""
    log_format: str = "json"
    """``json`` (structured, one object per line) or ``plain``."""
    verbose: bool = False
    """Debug logging."""


def _priority(text: str) -> int:
    """``auto`` draws a random priority so equal replicas elect one active peer."""
    if text == "auto":
        return random.SystemRandom().randint(1, 2**31 - 1)
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer or 'auto'") from None


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="deepseek-operator run", description="Run the DeepSeekDeployment operator."
    )
    p.add_argument(
        "--kubeconfig",
        default=os.environ.get("KUBECONFIG"),
        help="kubeconfig path (default: $KUBECONFIG, else in-cluster)",
    )
    p.add_argument(
        "--namespace",
        "-n",
        action="append",
        dest="namespaces",
        default=[],
        help="watch only this namespace (repeatable); default: all namespaces",
    )
    p.add_argument(
        "--peering",
        default=PEERING_NAME,
        help="name of the (Cluster)KopfPeering shared by the replicas",
    )
    p.add_argument("--standalone", action="store_true", help="no peering (single replica)")
    p.add_argument(
        "--priority",
        type=_priority,
        default=0,
        help="peering priority, or 'auto' (random) for active/standby replicas",
    )
    p.add_argument(
        "--peering-lifetime",
        type=int,
        default=60,
        help="seconds before a dead replica's heartbeat expires (HA takeover)",
    )
    p.add_argument("--liveness", default=None, help="e.g. http://0.0.0.0:8080/healthz")
    p.add_argument(
        "--resync-seconds",
        type=float,
        default=30.0,
        help="per-DSD resync period: inventory re-plan check, status repair",
    )
    p.add_argument("--workers", type=int, default=8, help="threads running the reconcile handlers")
    p.add_argument(
        "--prometheus-url",
        default=os.environ.get("DSO_PROMETHEUS_URL"),
        help="Prometheus queried by the native autoscaler and the circuit breaker "
        "(default: $DSO_PROMETHEUS_URL, else each DSD's monitoring.prometheusAddress)",
    )
    p.add_argument("--log-format", choices=["json", "plain"], default="json")
    p.add_argument("--verbose", "-v", action="store_true")
    return p


def parse_options(argv: Sequence[str] | None = None) -> OperatorOptions:
    """Parse ``run`` flags into :class:`OperatorOptions` (exit 2 on bad flags)."""
    ns = parser().parse_args(list(argv) if argv is not None else None)
    if ns.resync_seconds <= 0 or ns.workers <= 0 or ns.peering_lifetime <= 0:
        parser().error("--resync-seconds, --workers and --peering-lifetime must be positive")
    return OperatorOptions(
        kubeconfig=ns.kubeconfig,
        namespaces=tuple(ns.namespaces),
        peering=ns.peering,
        standalone=ns.standalone,
        priority=ns.priority,
        peering_lifetime=ns.peering_lifetime,
        liveness=ns.liveness,
        resync_seconds=ns.resync_seconds,
        workers=ns.workers,
        prometheus_url=ns.prometheus_url or None,
        log_format=ns.log_format,
        verbose=ns.verbose,
    )


def configure_logging(options: OperatorOptions) -> None:
    """Structured logs on stderr for both structlog and kopf's stdlib loggers."""
    fmt = kopf.LogFormat.JSON if options.log_format == "json" else kopf.LogFormat.PLAIN
    kopf.configure(verbose=options.verbose, log_format=fmt)
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if options.log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.DEBUG if options.verbose else logging.INFO
        ),
        # stdout: kopf logs to stderr; separate streams keep each line whole
        logger_factory=structlog.PrintLoggerFactory(file=sys.stdout),
        cache_logger_on_first_use=True,
    )


def build_settings(options: OperatorOptions) -> Any:
    """Kopf settings: our finalizer and annotation prefix, no CRD scanning, peering."""
    settings = kopf.OperatorSettings()
    settings.persistence.finalizer = "deepseek.ai/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="deepseek.ai")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="deepseek.ai", key="last-handled-configuration"
    )
    settings.posting.loggers = False  # only explicit decision events, no log spam
    # No namespace/CRD watching (least privilege) unless namespace globs must be resolved.
    settings.scanning.disabled = not any(set("*?[!") & set(ns) for ns in options.namespaces)
    settings.execution.executor = concurrent.futures.ThreadPoolExecutor(max_workers=options.workers)
    settings.peering.name = options.peering
    settings.peering.standalone = options.standalone
    settings.peering.priority = options.priority
    settings.peering.lifetime = options.peering_lifetime
    settings.peering.clusterwide = not options.namespaces
    settings.watching.server_timeout = 300
    settings.networking.request_timeout = 60
    return settings


def run_operator(options: OperatorOptions) -> int:
    """Run until stopped; return the process exit code."""
    configure_logging(options)
    log = structlog.get_logger("deepseek_operator.main")
    kube = Kube.from_config(options.kubeconfig)
    if options.kubeconfig:
        os.environ["KUBECONFIG"] = options.kubeconfig  # kopf's own login reads it
    lws = kube.resource(*LEADER_WORKER_SET) is not None
    ctx = HandlerContext(
        kube=kube,
        resync_seconds=options.resync_seconds,
        lws_served=lws,
        prometheus_url=options.prometheus_url,
    )
    registry = kopf.OperatorRegistry()
    register(registry, ctx)
    register_loops(registry, ctx)
    log.info(
        "starting",
        namespaces=list(options.namespaces) or "*",
        lws_served=lws,
        peering=None if options.standalone else options.peering,
    )
    asyncio.run(
        kopf.operator(
            registry=registry,
            settings=build_settings(options),
            standalone=options.standalone,
            priority=options.priority,
            peering_name=None if options.standalone else options.peering,
            liveness_endpoint=options.liveness,
            memo=ctx.memo(),
            clusterwide=not options.namespaces,
            namespaces=options.namespaces,
        )
    )
    log.info("stopped", api_writes=dict(kube.writes))
    return 0


def run(argv: Sequence[str] | None = None) -> int:
    """``deepseek-operator run [flags]``: parse ``argv`` and run the operator."""
    return run_operator(parse_options(argv))
