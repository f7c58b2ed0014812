"""Kopf handlers of the operator, registered into an explicit registry.

Called by :func:`.main.run_operator` (through :func:`register`). Every handler is a
small module-level function with kopf's typed keyword arguments (``body: kopf.Body``,
``memo: kopf.Memo``, one ``kopf.Index`` per index it reads, ``**_`` for the rest); the
shared :class:`~.context.HandlerContext` comes from the memo. Handlers only gather
inputs and call :mod:`.reconcile`. They are synchronous; kopf runs them in its thread
pool, and a per-DSD lock serialises passes over the same object.

    DSD create/update/resume ─┐
    node index changes ─timer─┤
    configRef ConfigMap event ┼─> reconcile(): plan → render → apply → prune → status
    workload deleted ─────────┘
    canary Progressing ─timer─> run_analysis() (Prometheus) → reconcile(analysis=run)
    native autoscaling ─timer─> run_autoscaler() (Prometheus) → scale    (.loops)
    traffic.istio ──────timer─> circuit evaluate() (Prometheus) → reconcile() on a change
    workload changed ─────────> refresh_status(): replicas, readiness, conditions
    DSD delete ───────────────> delete_children()  (owner refs would collect them too)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import kopf
import structlog
from pydantic import ValidationError

from deepseek_operator.api import API_VERSION, GROUP, KIND, PLURAL, VERSION, DeepSeekDeployment
from deepseek_operator.api.status import AnalysisRun

from . import reconcile as passes
from .analysis import run_analysis
from .canary import analysis_due
from .context import HandlerContext, from_memo
from .events import Emit, EventSpec
from .indices import (
    ConfigRefIndex,
    NodeIndex,
    WorkloadIndex,
    index_config_ref,
    index_gpu_node,
    index_workload,
    nodes_of,
    workloads_of,
)
from .kinds import managed_labels, owner_name
from .kube import KubeError
from .nodes import fingerprint
from .planning_step import PlanResult, same_decision
from .status import parse_status, workload_state
from .status_writer import now_rfc3339, refresh_status

log = structlog.get_logger("deepseek_operator.handlers")
DSD = (GROUP, VERSION, PLURAL)
LWS = ("leaderworkerset.x-k8s.io", "v1", "leaderworkersets")


# --- helpers -------------------------------------------------------------------------


def _emitter(body: dict[str, Any]) -> Emit:
    def emit(event: EventSpec) -> None:
        kopf.event(
            cast(kopf.Body, body), type=event.type, reason=event.reason, message=event.message
        )

    return emit


def _retry_later(exc: KubeError) -> kopf.TemporaryError:
    """Kopf retries the handler: soon after a write conflict, later after other errors."""
    return kopf.TemporaryError(str(exc), delay=5 if exc.status == 409 else 15)


def _run_pass(
    ctx: HandlerContext,
    body: dict[str, Any],
    nodes: list[dict[str, Any]],
    result: PlanResult | None = None,
    analysis: AnalysisRun | None = None,
) -> None:
    """One reconcile pass under the DSD's lock; API failures retry through kopf."""
    meta = body["metadata"]
    with ctx.lock(meta["namespace"], meta["name"]):
        try:
            passes.reconcile(body, nodes, ctx.kube, _emitter(body), result, analysis=analysis)
        except KubeError as exc:
            raise _retry_later(exc) from exc


def _live_dsd(ctx: HandlerContext, namespace: str, name: str) -> dict[str, Any] | None:
    """The DSD as stored now, unless it is gone or being deleted."""
    live = ctx.kube.get(API_VERSION, KIND, namespace, name)
    if live is None or live["metadata"].get("deletionTimestamp"):
        return None
    return live


# --- handlers ------------------------------------------------------------------------


def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """In-cluster service account first, else ``$KUBECONFIG`` / ``~/.kube/config``."""
    return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)


def reconcile_dsd(*, body: kopf.Body, memo: kopf.Memo, gpu_nodes: NodeIndex, **_: Any) -> None:
    """create / update / resume: one full pass."""
    nodes = nodes_of(gpu_nodes)
    memo["inventory"] = fingerprint(nodes)
    _run_pass(from_memo(memo), dict(body), nodes)


def resync_dsd(
    *,
    body: kopf.Body,
    memo: kopf.Memo,
    namespace: str,
    name: str,
    gpu_nodes: NodeIndex,
    workloads_deployments: WorkloadIndex,
    workloads_lws: WorkloadIndex | None = None,
    **_: Any,
) -> None:
    """Re-plan when the GPU inventory changed; repair status drift. Usually a no-op."""
    ctx, raw = from_memo(memo), dict(body)
    if raw["metadata"].get("deletionTimestamp"):
        return
    nodes = nodes_of(gpu_nodes)
    inventory = fingerprint(nodes)
    recorded = parse_status(raw.get("status"))
    if memo.get("inventory") != inventory:
        result = passes.plan_pass(ctx.kube, raw, nodes)
        if not same_decision(recorded, result.outcome.ok, result.outcome.plan):
            log.info("inventory_changed", namespace=namespace, name=name)
            _run_pass(ctx, raw, nodes, result)
        memo["inventory"] = inventory
        return
    workloads = workloads_of(namespace, name, workloads_deployments, workloads_lws)
    if not workloads and recorded.ready_replicas is not None and recorded.planned():
        _run_pass(ctx, raw, nodes)  # a workload vanished: recreate it
        return
    with ctx.lock(namespace, name):
        refresh_status(ctx.kube, namespace, name, workloads, raw.get("status"))


def canary_running(*, status: kopf.Status, **_: Any) -> bool:
    """Timer filter: a canary of this DSD is shifting traffic."""
    canary = parse_status(status).canary
    return canary is not None and canary.phase == "Progressing"


def canary_tick(
    *, namespace: str, name: str, memo: kopf.Memo, gpu_nodes: NodeIndex, **_: Any
) -> None:
    """A canary runs: when its analysis is due, query Prometheus and step the canary."""
    ctx = from_memo(memo)
    live = _live_dsd(ctx, namespace, name)  # fresh status.canary
    if live is None:
        return
    try:
        dsd = DeepSeekDeployment.model_validate(live)
    except (ValidationError, ValueError):
        return  # the reconcile pass reports an invalid spec
    canary = dsd.status.canary if dsd.status is not None else None
    now = now_rfc3339()
    if analysis_due(canary, dsd.spec.rollout.canary.analysis.interval, now):
        _run_pass(ctx, live, nodes_of(gpu_nodes), analysis=run_analysis(dsd, now))


def workload_changed(
    *,
    body: kopf.Body,
    namespace: str,
    type: str | None,
    memo: kopf.Memo,
    gpu_nodes: NodeIndex,
    workloads_deployments: WorkloadIndex,
    workloads_lws: WorkloadIndex | None = None,
    **_: Any,
) -> None:
    """A Deployment / LeaderWorkerSet of a DSD changed: refresh (or recreate)."""
    ctx, raw = from_memo(memo), dict(body)
    owner = owner_name(raw)
    if owner is None:
        return
    if type == "DELETED":
        live = _live_dsd(ctx, namespace, owner)
        if live is not None:
            _run_pass(ctx, live, nodes_of(gpu_nodes))
        return
    others = [
        w
        for w in workloads_of(namespace, owner, workloads_deployments, workloads_lws)
        if w.name != raw["metadata"]["name"] or w.kind != raw.get("kind")
    ]
    with ctx.lock(namespace, owner):
        refresh_status(ctx.kube, namespace, owner, [*others, workload_state(raw)])


def names_a_model_config(
    *, namespace: str, name: str, config_refs: ConfigRefIndex, **_: Any
) -> bool:
    """Event filter: some DSD's ``configRef`` names this ConfigMap; kopf skips the others."""
    return (namespace, name) in config_refs


def config_map_changed(
    *,
    namespace: str,
    name: str,
    type: str | None,
    memo: kopf.Memo,
    gpu_nodes: NodeIndex,
    config_refs: ConfigRefIndex,
    **_: Any,
) -> None:
    """A ConfigMap named by some DSD's ``configRef`` was created, edited or deleted: re-plan.

    The initial listing (``type`` None) is skipped: the resume pass plans every DSD.
    """
    if type is None or (namespace, name) not in config_refs:
        return
    ctx = from_memo(memo)
    for dsd_name in sorted(set(config_refs[(namespace, name)])):
        live = _live_dsd(ctx, namespace, dsd_name)
        if live is not None:
            log.info("model_config_changed", namespace=namespace, name=dsd_name, configmap=name)
            _run_pass(ctx, live, nodes_of(gpu_nodes))


def cleanup(*, namespace: str, name: str, uid: str, memo: kopf.Memo, **_: Any) -> None:
    """DSD deleted: delete every child now (the finalizer waits for this)."""
    try:
        deleted = passes.delete_children(from_memo(memo).kube, namespace, name, uid)
    except KubeError as exc:
        raise _retry_later(exc) from exc
    log.info("deleted_children", namespace=namespace, name=name, children=deleted)


# --- registration --------------------------------------------------------------------


def _callback(fn: Callable[..., object]) -> Any:
    """``fn`` as kopf's decorators take it.

    Kopf's callback protocols list only kopf's own keyword arguments; it also passes one
    keyword per registered index (``gpu_nodes``, ``config_refs``...), which the protocols
    cannot name. The handlers declare exactly what they read, and mypy checks their bodies.
    """
    return fn


def register(registry: kopf.OperatorRegistry, ctx: HandlerContext) -> None:
    """Register every handler of the operator into ``registry``.

    ``ctx`` decides what is registered (timer periods, whether LeaderWorkerSets are
    watched); the handlers themselves read it from kopf's memo (``ctx.memo()``).
    """
    owned = managed_labels()
    kopf.on.login(registry=registry, id="login")(login)
    kopf.index("", "v1", "nodes", registry=registry, id="gpu_nodes")(_callback(index_gpu_node))
    kopf.index(*DSD, registry=registry, id="config_refs")(_callback(index_config_ref))
    kopf.index(
        "apps", "v1", "deployments", labels=owned, registry=registry, id="workloads_deployments"
    )(_callback(index_workload))
    if ctx.lws_served:
        kopf.index(*LWS, labels=owned, registry=registry, id="workloads_lws")(
            _callback(index_workload)
        )
    for on in (kopf.on.create, kopf.on.update, kopf.on.resume):
        on(*DSD, registry=registry, id="reconcile")(_callback(reconcile_dsd))
    kopf.timer(*DSD, registry=registry, interval=ctx.resync_seconds, initial_delay=5, id="resync")(
        _callback(resync_dsd)
    )
    kopf.timer(
        *DSD,
        registry=registry,
        interval=ctx.canary_tick_seconds,
        when=canary_running,
        id="canary",
    )(_callback(canary_tick))
    kopf.on.event(
        "apps", "v1", "deployments", labels=owned, registry=registry, id="deployment_changed"
    )(_callback(workload_changed))
    if ctx.lws_served:
        kopf.on.event(*LWS, labels=owned, registry=registry, id="lws_changed")(
            _callback(workload_changed)
        )
    kopf.on.event(
        "",
        "v1",
        "configmaps",
        registry=registry,
        when=_callback(names_a_model_config),
        id="model_config_changed",
    )(_callback(config_map_changed))
    kopf.on.delete(*DSD, registry=registry, id="cleanup")(_callback(cleanup))
