"""Kopf timers of the operator's own control loops: native autoscaling, circuit breaking.

Registered by :func:`register_loops` (called by :func:`.main.run_operator` after
:func:`.handlers.register`). Each timer ticks every ``HandlerContext.loop_tick_seconds``
on the DSDs its filter selects and works only when the DSD's own interval is due
(``autoscaling.native.interval``, ``resilience.circuitBreaker.interval``); the work is in
:mod:`.autoscaler` and :mod:`.circuit_breaker`, the decisions in
:mod:`deepseek_operator.autoscaling`.
"""

from __future__ import annotations

import time
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


def due(memo: kopf.Memo, key: str, interval: float | None, now: float) -> bool:
    """True (and the round is booked) when ``interval`` passed since the last round.

    Kopf's memo is per object, so ``memo[key]`` is this DSD's last round; a restarted
    operator starts with an empty memo and runs a round at once.
    """
    if interval is None:
        return False
    last = memo.get(key)
    if isinstance(last, float) and now - last < interval - 0.25:
        return False
    memo[key] = now
    return True


def _typed(body: dict[str, Any]) -> Dsd | None:
    try:
        return Dsd.model_validate(body)
    except (ValidationError, ValueError):
        return None  # the reconcile pass reports an invalid spec


def _planned(ctx: HandlerContext, namespace: str, name: str) -> tuple[dict[str, Any], Dsd] | None:
    """The live DSD (raw and typed) once it has been planned, else None."""
    raw = live_body(ctx, namespace, name)
    dsd = _typed(raw) if raw is not None else None
    if raw is None or dsd is None or dsd.status is None or not dsd.status.planned():
        return None
    return raw, dsd


def autoscale_tick(
    *, body: kopf.Body, namespace: str, name: str, memo: kopf.Memo, **_: Any
) -> None:
    """Native autoscaling: when the DSD's interval is due, read Prometheus and scale."""
    seen = _typed(dict(body))  # kopf's copy decides whether a round is due: no request
    if seen is None or not due(
        memo, "autoscaler_last", autoscaler.interval_seconds(seen), time.monotonic()
    ):
        return
    ctx = from_memo(memo)
    found = _planned(ctx, namespace, name)
    if found is None:
        return
    raw, dsd = found
    history = memo.get("autoscaler_history")
    with ctx.lock(namespace, name):
        try:
            decision = autoscaler.run_autoscaler(
                ctx.kube,
                dsd,
                emitter(raw),
                now_rfc3339(),
                prometheus_url=ctx.prometheus_url,
                history=history if isinstance(history, tuple) else None,
            )
        except KubeError as exc:
            raise retry_later(exc) from exc
    if decision is not None:
        memo["autoscaler_history"] = decision.history


def istio_routed(*, spec: kopf.Spec, **_: Any) -> bool:
    """Timer filter: ``traffic.istio`` is set (a VirtualService for the circuit breaker)."""
    return bool((spec.get("traffic") or {}).get("istio") is not None)


def circuit_tick(
    *,
    body: kopf.Body,
    namespace: str,
    name: str,
    memo: kopf.Memo,
    gpu_nodes: NodeIndex,
    **_: Any,
) -> None:
    """Circuit breaker: when due, judge each track's error rate; re-render on a change."""
    seen = _typed(dict(body))
    if seen is None or not due(
        memo, "circuit_last", circuit_breaker.interval_seconds(seen), time.monotonic()
    ):
        return
    ctx = from_memo(memo)
    found = _planned(ctx, namespace, name)
    if found is None:
        return
    raw, dsd = found
    with ctx.lock(namespace, name):
        try:
            changed = circuit_breaker.evaluate(
                ctx.kube, dsd, emitter(raw), now_rfc3339(), prometheus_url=ctx.prometheus_url
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
