"""Kopf handlers of the operator, registered into an explicit registry.

Called by :func:`.main.run` (through :func:`register`).  Every handler is thin:
it gathers inputs (the DSD body, the node index, the workload index) and calls
:mod:`.reconcile`.  Handlers are synchronous; kopf runs them in its thread pool,
and a per-DSD lock serialises passes over the same object.

    DSD create/update/resume ─┐
    node index changes ─timer─┼─> reconcile(): plan → render → apply → prune → status
    workload deleted ─────────┘
    canary Progressing ─timer─> run_analysis() (Prometheus) → reconcile(analysis=run)
    workload changed ─────────> refresh_status(): replicas, readiness, conditions
    DSD delete ───────────────> delete_children()  (owner refs would collect them too)
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import kopf
import structlog
from pydantic import ValidationError

from deepseek_operator.api import GROUP, KIND, PLURAL, VERSION, DeepSeekDeployment

from . import reconcile as rc
from .analysis import run_analysis
from .canary import analysis_due
from .decide import EventSpec, owner_name, plan_outcome
from .kinds import MANAGED_BY, MANAGED_BY_LABEL
from .kube import Kube, KubeError
from .nodes import fingerprint, project_node
from .status import WorkloadState, workload_state

log = structlog.get_logger("deepseek_operator.handlers")


@dataclass(slots=True)
class Runtime:
    """Process-wide state shared by the handlers."""

    kube: Kube
    resync_seconds: float = 30.0
    canary_tick_seconds: float = 2.0
    """How often a DSD with a running canary checks whether its analysis is due."""
    lws_served: bool = True
    locks: dict[tuple[str, str], threading.Lock] = field(default_factory=dict)
    guard: threading.Lock = field(default_factory=threading.Lock)

    def lock(self, namespace: str, name: str) -> threading.Lock:
        with self.guard:
            return self.locks.setdefault((namespace, name), threading.Lock())


def _nodes(index: Any) -> list[dict[str, Any]]:
    """Node dicts from the ``gpu_nodes`` kopf index (name -> [projected node])."""
    return [node for store in index.values() for node in store]


def _emitter(body: Mapping[str, Any]) -> Callable[[EventSpec], None]:
    def emit(event: EventSpec) -> None:
        kopf.event(
            cast(kopf.Body, body), type=event.type, reason=event.reason, message=event.message
        )

    return emit


def _temporary(exc: KubeError) -> kopf.TemporaryError:
    return kopf.TemporaryError(str(exc), delay=5 if exc.status == 409 else 15)


def _body(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    return dict(kwargs["body"])


def register(registry: kopf.OperatorRegistry, rt: Runtime) -> None:
    """Register every handler of the operator into ``registry``.

    Handlers take ``**kwargs`` (kopf passes body, name, namespace, memo, indices…)
    and read what they need, which keeps them compatible with kopf's callback types.
    """
    dsd = (GROUP, VERSION, PLURAL)
    owned = {MANAGED_BY_LABEL: MANAGED_BY}

    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        """In-cluster service account first, else ``$KUBECONFIG`` / ``~/.kube/config``."""
        return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)

    kopf.on.login(registry=registry, id="login")(login)

    def gpu_nodes(**kwargs: Any) -> dict[str, dict[str, Any]]:
        return {str(kwargs["name"]): project_node(_body(kwargs))}

    def workload_index(**kwargs: Any) -> dict[tuple[str, str], dict[str, Any]] | None:
        body = _body(kwargs)
        owner = owner_name(body)
        return {(str(kwargs["namespace"]), owner): body} if owner else None

    kopf.index("", "v1", "nodes", registry=registry, id="gpu_nodes")(gpu_nodes)
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

    def workloads_of(namespace: str, name: str, kwargs: Mapping[str, Any]) -> list[WorkloadState]:
        out: list[WorkloadState] = []
        for key in ("workloads_deployments", "workloads_lws"):
            index = kwargs.get(key)
            if index is not None and (namespace, name) in index:
                out += [workload_state(obj) for obj in index[(namespace, name)]]
        return out

    def run_pass(body: dict[str, Any], nodes: list[dict[str, Any]]) -> None:
        meta = body["metadata"]
        with rt.lock(meta["namespace"], meta["name"]):
            try:
                rc.reconcile(body, nodes, rt.kube, _emitter(body))
            except KubeError as exc:
                raise _temporary(exc) from exc

    def reconcile_handler(**kwargs: Any) -> None:
        """create / update / resume: one full pass."""
        nodes = _nodes(kwargs["gpu_nodes"])
        kwargs["memo"]["inventory"] = fingerprint(nodes)
        run_pass(_body(kwargs), nodes)

    for decorator in (kopf.on.create, kopf.on.update, kopf.on.resume):
        decorator(*dsd, registry=registry, id="reconcile")(reconcile_handler)

    def resync(**kwargs: Any) -> None:
        """Re-plan when the GPU inventory changed; repair status drift. Usually a no-op."""
        body, memo = _body(kwargs), kwargs["memo"]
        namespace, name = str(kwargs["namespace"]), str(kwargs["name"])
        if body["metadata"].get("deletionTimestamp"):
            return
        nodes = _nodes(kwargs["gpu_nodes"])
        inventory = fingerprint(nodes)
        status: dict[str, Any] = body.get("status") or {}
        if memo.get("inventory") != inventory:
            result = plan_outcome(body, nodes)
            if not same_decision(status, result.outcome.ok, result.outcome.plan):
                log.info("inventory_changed", namespace=namespace, name=name)
                with rt.lock(namespace, name):
                    try:
                        rc.reconcile(body, nodes, rt.kube, _emitter(body), result)
                    except KubeError as exc:
                        raise _temporary(exc) from exc
            memo["inventory"] = inventory
            return
        workloads = workloads_of(namespace, name, kwargs)
        if not workloads and status.get("readyReplicas") is not None and planned_ok(status):
            run_pass(body, nodes)  # a workload vanished: recreate it
            return
        with rt.lock(namespace, name):
            rc.refresh_status(rt.kube, namespace, name, workloads, status)

    kopf.timer(*dsd, registry=registry, interval=rt.resync_seconds, initial_delay=5, id="resync")(
        resync
    )

    def canary_running(**kwargs: Any) -> bool:
        canary = (_body(kwargs).get("status") or {}).get("canary") or {}
        return bool(canary.get("phase") == "Progressing")

    def canary_tick(**kwargs: Any) -> None:
        """A canary runs: when its analysis is due, query Prometheus and step the canary."""
        namespace, name = str(kwargs["namespace"]), str(kwargs["name"])
        live = rt.kube.get(rc.API_VERSION, KIND, namespace, name)  # fresh status.canary
        if live is None or live["metadata"].get("deletionTimestamp"):
            return
        try:
            dsd_obj = DeepSeekDeployment.model_validate(live)
        except (ValidationError, ValueError):
            return  # the reconcile pass reports an invalid spec
        canary = dsd_obj.status.canary if dsd_obj.status is not None else None
        now = rc.now_rfc3339()
        if not analysis_due(canary, dsd_obj.spec.rollout.canary.analysis.interval, now):
            return
        run = run_analysis(dsd_obj, now)
        with rt.lock(namespace, name):
            try:
                rc.reconcile(
                    live, _nodes(kwargs["gpu_nodes"]), rt.kube, _emitter(live), analysis=run
                )
            except KubeError as exc:
                raise _temporary(exc) from exc

    kopf.timer(
        *dsd,
        registry=registry,
        interval=rt.canary_tick_seconds,
        when=canary_running,
        id="canary",
    )(canary_tick)

    def on_workload(**kwargs: Any) -> None:
        """A Deployment / LeaderWorkerSet of a DSD changed: refresh (or recreate)."""
        body, namespace = _body(kwargs), str(kwargs["namespace"])
        owner = owner_name(body)
        if owner is None:
            return
        if kwargs.get("type") == "DELETED":
            live = rt.kube.get(rc.API_VERSION, KIND, namespace, owner)
            if live and not live["metadata"].get("deletionTimestamp"):
                run_pass(live, _nodes(kwargs["gpu_nodes"]))
            return
        others = [
            w
            for w in workloads_of(namespace, owner, kwargs)
            if w.name != body["metadata"]["name"] or w.kind != body.get("kind")
        ]
        with rt.lock(namespace, owner):
            rc.refresh_status(rt.kube, namespace, owner, [*others, workload_state(body)])

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

    def cleanup(**kwargs: Any) -> None:
        """DSD deleted: delete every child now (the finalizer waits for this)."""
        namespace, name, uid = str(kwargs["namespace"]), str(kwargs["name"]), str(kwargs["uid"])
        try:
            deleted = rc.delete_children(rt.kube, namespace, name, uid)
        except KubeError as exc:
            raise _temporary(exc) from exc
        log.info("deleted_children", namespace=namespace, name=name, children=deleted)

    kopf.on.delete(*dsd, registry=registry, id="cleanup")(cleanup)


def same_decision(status: Mapping[str, Any], ok: bool, plan: dict[str, Any] | None) -> bool:
    """True when a fresh plan matches what status records (no re-plan needed)."""
    return planned_ok(status) == ok and (not ok or plan == status.get("plan"))


def planned_ok(status: Mapping[str, Any]) -> bool:
    """True when status records ``Planned=True``."""
    conditions = status.get("conditions") or []
    return any(c.get("type") == "Planned" and c.get("status") == "True" for c in conditions)
