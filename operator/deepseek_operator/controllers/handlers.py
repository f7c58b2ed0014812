"""Kopf handlers of the operator, registered into an explicit registry.

Called by :func:`.main.run` (through :func:`register`).  Every handler is thin:
it gathers inputs (the DSD body, the node index, the workload index) and calls
:mod:`.reconcile`.  Handlers are synchronous; kopf runs them in its thread pool,
and a per-DSD lock serialises passes over the same object.

    DSD create/update/resume ─┐
    node index changes ─timer─┼─> reconcile(): plan → render → apply → prune → status
    workload deleted ─────────┘
    workload changed ─────────> refresh_status(): replicas, readiness, conditions
    DSD delete ───────────────> delete_children()  (owner refs would collect them too)
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import kopf
import structlog

from deepseek_operator.api import GROUP, KIND, PLURAL, VERSION

from . import reconcile as rc
from .decide import EventSpec, owner_name, plan_outcome
from .kinds import MANAGED_BY, MANAGED_BY_LABEL
from .kube import Kube, KubeError
from .nodes import fingerprint, project_node
from .status import workload_state

log = structlog.get_logger("deepseek_operator.handlers")


@dataclass(slots=True)
class Runtime:
    """Process-wide state shared by the handlers."""

    kube: Kube
    resync_seconds: float = 30.0
    lws_served: bool = True
    locks: dict[tuple[str, str], threading.Lock] = field(default_factory=dict)
    guard: threading.Lock = field(default_factory=threading.Lock)

    def lock(self, namespace: str, name: str) -> threading.Lock:
        with self.guard:
            return self.locks.setdefault((namespace, name), threading.Lock())


def _nodes(index: kopf.Index[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return [node for store in index.values() for node in store]


def _emitter(body: kopf.Body) -> Callable[[EventSpec], None]:
    def emit(event: EventSpec) -> None:
        kopf.event(body, type=event.type, reason=event.reason, message=event.message)

    return emit


def _temporary(exc: KubeError) -> kopf.TemporaryError:
    return kopf.TemporaryError(str(exc), delay=5 if exc.status == 409 else 15)


def register(registry: kopf.OperatorRegistry, rt: Runtime) -> None:
    """Register every handler of the operator into ``registry``."""
    dsd = (GROUP, VERSION, PLURAL)
    owned = {MANAGED_BY_LABEL: MANAGED_BY}

    @kopf.index("", "v1", "nodes", registry=registry)  # type: ignore[arg-type]
    def gpu_nodes(name: str, body: kopf.Body, **_: Any) -> dict[str, dict[str, Any]]:
        return {name: project_node(dict(body))}

    def workload_index(body: kopf.Body, namespace: str, **_: Any) -> dict[Any, Any] | None:
        owner = owner_name(dict(body))
        return {(namespace, owner): dict(body)} if owner else None

    kopf.index(
        "apps", "v1", "deployments", labels=owned, registry=registry, id="workloads_deployments"
    )(workload_index)
    if rt.lws_served:
        kopf.index(
            "leaderworkerset.x-k8s.io",
            "v1",
            "leaderworkersets",
            labels=owned,
            registry=registry,
            id="workloads_lws",
        )(workload_index)

    def workloads_of(namespace: str, name: str, kwargs: dict[str, Any]) -> list[Any]:
        out = []
        for key in ("workloads_deployments", "workloads_lws"):
            index = kwargs.get(key)
            if index is not None and (namespace, name) in index:
                out += [workload_state(obj) for obj in index[(namespace, name)]]
        return out

    def run_pass(body: kopf.Body, nodes: list[dict[str, Any]]) -> None:
        meta = body["metadata"]
        with rt.lock(meta["namespace"], meta["name"]):
            try:
                rc.reconcile(dict(body), nodes, rt.kube, _emitter(body))
            except KubeError as exc:
                raise _temporary(exc) from exc

    @kopf.on.create(*dsd, registry=registry, id="reconcile")
    @kopf.on.update(*dsd, registry=registry, id="reconcile")
    @kopf.on.resume(*dsd, registry=registry, id="reconcile")
    def reconcile_handler(
        body: kopf.Body, gpu_nodes: kopf.Index[str, Any], memo: kopf.Memo, **_: Any
    ) -> None:
        nodes = _nodes(gpu_nodes)
        memo["inventory"] = fingerprint(nodes)
        run_pass(body, nodes)

    @kopf.timer(*dsd, registry=registry, interval=rt.resync_seconds, initial_delay=5, id="resync")
    def resync(
        body: kopf.Body,
        gpu_nodes: kopf.Index[str, Any],
        memo: kopf.Memo,
        namespace: str,
        name: str,
        **kwargs: Any,
    ) -> None:
        """Re-plan when the GPU inventory changed; repair status drift. Usually a no-op."""
        if body["metadata"].get("deletionTimestamp"):
            return
        nodes = _nodes(gpu_nodes)
        inventory = fingerprint(nodes)
        if memo.get("inventory") != inventory:
            result = plan_outcome(dict(body), nodes)
            status = body.get("status") or {}
            planned = next(
                (c for c in status.get("conditions") or [] if c.get("type") == "Planned"), {}
            )
            unchanged = (
                result.outcome.plan == status.get("plan")
                and (planned.get("status") == "True") == result.outcome.ok
            )
            if not unchanged:
                log.info("inventory_changed", namespace=namespace, name=name)
                with rt.lock(namespace, name):
                    try:
                        rc.reconcile(dict(body), nodes, rt.kube, _emitter(body), result)
                    except KubeError as exc:
                        raise _temporary(exc) from exc
            memo["inventory"] = inventory
            return
        workloads = workloads_of(namespace, name, kwargs)
        expected = (body.get("status") or {}).get("readyReplicas") is not None
        if not workloads and expected and planned_ok(body):
            run_pass(body, nodes)  # a workload vanished: recreate it
            return
        with rt.lock(namespace, name):
            rc.refresh_status(rt.kube, namespace, name, workloads, dict(body.get("status") or {}))

    def on_workload(event: dict[str, Any], body: kopf.Body, namespace: str, **kwargs: Any) -> None:
        owner = owner_name(dict(body))
        if owner is None:
            return
        if event.get("type") == "DELETED":
            live = rt.kube.get(rc.API_VERSION, KIND, namespace, owner)
            if live and not live["metadata"].get("deletionTimestamp"):
                run_pass(kopf.Body(live), _nodes(kwargs["gpu_nodes"]))
            return
        others = [
            w
            for w in workloads_of(namespace, owner, kwargs)
            if w.name != body["metadata"]["name"] or w.kind != body.get("kind")
        ]
        with rt.lock(namespace, owner):
            rc.refresh_status(rt.kube, namespace, owner, [*others, workload_state(dict(body))])

    kopf.on.event(
        "apps", "v1", "deployments", labels=owned, registry=registry, id="deployment_changed"
    )(on_workload)
    if rt.lws_served:
        kopf.on.event(
            "leaderworkerset.x-k8s.io",
            "v1",
            "leaderworkersets",
            labels=owned,
            registry=registry,
            id="lws_changed",
        )(on_workload)

    @kopf.on.delete(*dsd, registry=registry, id="cleanup")
    def cleanup(namespace: str, name: str, uid: str, **_: Any) -> None:
        try:
            deleted = rc.delete_children(rt.kube, namespace, name, uid)
        except KubeError as exc:
            raise _temporary(exc) from exc
        log.info("deleted_children", namespace=namespace, name=name, children=deleted)


def planned_ok(body: kopf.Body) -> bool:
    conditions = (body.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Planned" and c.get("status") == "True" for c in conditions)
