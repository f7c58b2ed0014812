"""What every kopf handler of the operator shares, carried in kopf's ``memo``.

:func:`.main.run_operator` builds one :class:`HandlerContext` and hands
:meth:`HandlerContext.memo` to ``kopf.operator(memo=...)``. Kopf gives each watched
object a shallow copy of that memo, so the context (the API client, the locks) is one
object shared by all handlers, while keys set per object (the last GPU inventory
fingerprint a DSD was planned against) stay with that object.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import kopf

from .kube import Kube

MEMO_KEY = "handler_context"
"""Key of the :class:`HandlerContext` in kopf's memo."""


@dataclass(slots=True)
class DsdLocks:
    """One lock per DSD: kopf runs handlers in threads, passes over one DSD go in turn."""

    locks: dict[tuple[str, str], threading.Lock] = field(default_factory=dict)
    guard: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, namespace: str, name: str) -> threading.Lock:
        """The lock of the DSD ``namespace/name`` (created on first use)."""
        with self.guard:
            return self.locks.setdefault((namespace, name), threading.Lock())


@dataclass(frozen=True, slots=True)
class HandlerContext:
    """Process-wide state and settings of the handlers."""

    kube: Kube
    """The API client every pass reads and writes through."""
    resync_seconds: float = 30.0
    """Period of the per-DSD resync timer (inventory re-plan, status repair), seconds."""
    canary_tick_seconds: float = 2.0
    """How often a DSD with a running canary checks whether its analysis is due, seconds."""
    loop_tick_seconds: float = 2.0
    """How often a DSD with a native autoscaler or an Istio circuit breaker checks whether
    its next round is due (each has its own interval in the spec), seconds."""
    prometheus_url: str | None = None
    """Prometheus the native autoscaler and the circuit breaker query; None: each DSD's
    ``monitoring.prometheusAddress``."""
    lws_served: bool = True
    """The cluster serves LeaderWorkerSets, so the operator indexes and watches them."""
    lock: DsdLocks = field(default_factory=DsdLocks)
    """Serialises passes over the same DSD."""

    def memo(self) -> kopf.Memo:
        """The operator-wide memo to pass to ``kopf.operator``."""
        return kopf.Memo({MEMO_KEY: self})


def from_memo(memo: kopf.Memo) -> HandlerContext:
    """The :class:`HandlerContext` a handler's ``memo`` carries."""
    ctx = memo.get(MEMO_KEY)
    if not isinstance(ctx, HandlerContext):
        raise RuntimeError(f"kopf memo has no {MEMO_KEY}: start the operator with ctx.memo()")
    return ctx
