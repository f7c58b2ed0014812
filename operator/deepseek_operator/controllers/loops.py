"""Kopf timers of the operator's own control loops: native autoscaling, circuit breaking.

Registered by :func:`register_loops` (called by :func:`.main.run_operator` after
:func:`.handlers.register`). Each timer ticks every ``HandlerContext.loop_tick_seconds``
on the DSDs its filter selects and works only when the DSD's own interval is due
(``autoscaling.native.interval``, ``resilience.circuitBreaker.interval``); the work is in
:mod:`.autoscaler` and :mod:`.circuit_breaker`, the decisions in
:mod:`deepseek_operator.autoscaling`.
"""

from __future__ import annotations

from typing import Any

import kopf
from pydantic import ValidationError

from deepseek_operator.api import DeepSeekDeployment as Dsd

from . import autoscaler, circuit_breaker
from .context import HandlerContext, from_memo
from .handlers import DSD
from .handlers import _callback as callback
from .handlers import _emitter as emitter
from .handlers import _live_dsd as live_body
from .handlers import _retry_later as retry_later
from .handlers import _run_pass as run_pass
from .indices import NodeIndex, nodes_of
from .kube import KubeError
from .status_writer import now_rfc3339


def native_autoscaling(*, spec: kopf.Spec, **_: Any) -> bool:
    """Timer filter: ``autoscaling.provider: native``."""
    scaling = spec.get("autoscaling") or {}
    return bool(scaling) and scaling.get("provider") == "native"


def _planned(ctx: HandlerContext, namespace: str, name: str) -> tuple[dict[str, Any], Dsd] | None:
    """The live DSD (raw and typed) once it has been planned, else None."""
    raw = live_body(ctx, namespace, name)
    if raw is None:
        return None
    try:
        dsd = Dsd.model_validate(raw)
    except (ValidationError, ValueError):
        return None  # the reconcile pass reports an invalid spec
    if dsd.status is None or not dsd.status.planned():
        return None
    return raw, dsd


def autoscale_tick(*, namespace: str, name: str, memo: kopf.Memo, **_: Any) -> None:
    """Native autoscaling: when the DSD's interval is due, read Prometheus and scale."""
    ctx = from_memo(memo)
    found = _planned(ctx, namespace, name)
    now = now_rfc3339()
    if found is None or not autoscaler.due(found[1], now):
        return
    raw, dsd = found
    with ctx.lock(namespace, name):
        try:
            autoscaler.run_autoscaler(
                ctx.kube, dsd, emitter(raw), now, prometheus_url=ctx.prometheus_url
            )
        except KubeError as exc:
            raise retry_later(exc) from exc


def istio_routed(*, spec: kopf.Spec, **_: Any) -> bool:
    """Timer filter: ``traffic.istio`` is set (a VirtualService for the circuit breaker)."""
    return bool((spec.get("traffic") or {}).get("istio") is not None)


def circuit_tick(
    *, namespace: str, name: str, memo: kopf.Memo, gpu_nodes: NodeIndex, **_: Any
) -> None:
    """Circuit breaker: when due, judge each track's error rate; re-render on a change."""
    ctx = from_memo(memo)
    found = _planned(ctx, namespace, name)
    now = now_rfc3339()
    if found is None or not circuit_breaker.due(found[1], now):
        return
    raw, dsd = found
    with ctx.lock(namespace, name):
        try:
            changed = circuit_breaker.evaluate(
                ctx.kube, dsd, emitter(raw), now, prometheus_url=ctx.prometheus_url
            )
        except KubeError as exc:
            raise retry_later(exc) from exc
    live = live_body(ctx, namespace, name) if changed else None
    if live is not None:  # the VirtualService follows status.circuit
        run_pass(ctx, live, nodes_of(gpu_nodes))


def register_loops(registry: kopf.OperatorRegistry, ctx: HandlerContext) -> None:
    """Register the native autoscaler and circuit breaker timers into ``registry``."""
    for timer_id, handler, when in (
        ("native_autoscaler", autoscale_tick, native_autoscaling),
        ("circuit_breaker", circuit_tick, istio_routed),
    ):
        kopf.timer(
            *DSD,
            registry=registry,
            interval=ctx.loop_tick_seconds,
            initial_delay=1,
            when=callback(when),
            id=timer_id,
        )(callback(handler))
