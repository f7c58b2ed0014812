"""One reconcile pass of a DeepSeekDeployment: plan → render → apply → prune → status.

Called by the kopf handlers in :mod:`.handlers` (create, update, resume, the
node-inventory timer and workload events).  Decisions are pure functions from
:mod:`.decide`, :mod:`.semantic` and :mod:`.status`; this module only sequences
them around the API calls of :class:`.kube.Kube`.

A pass over an unchanged object sends no write: children whose live copy already
holds every desired field (and the same ``deepseek.ai/applied-hash``) are not
applied, unchanged status is not patched, and no Event is posted.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from deepseek_operator.api import GROUP, KIND, VERSION
from deepseek_operator.api.status import AnalysisRun
from deepseek_operator.render import (
    endpoint,
    render_children,
    selector_string,
    stable_held,
    workload_name,
)

from .canary_pass import drive_canary
from .decide import EventSpec, PlanResult, owned_by, plan_events, plan_outcome
from .kinds import PRUNE_KINDS, WORKLOAD_KINDS, owner_selector
from .kube import Kube, KubeError
from .semantic import needs_apply, stamp
from .status import PlanOutcome, WorkloadState, compute_status, status_patch, workload_state

API_VERSION = f"{GROUP}/{VERSION}"
HELD = (("Deployment", False), ("LeaderWorkerSet", True))  # stable workload kinds and names
log = structlog.get_logger("deepseek_operator.reconcile")
Emit = Callable[[EventSpec], None]


def now_rfc3339() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


@dataclass(slots=True)
class PassReport:
    """What one pass did (for logs and tests)."""

    applied: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    pruned: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    status_written: bool = False
    outcome: PlanOutcome | None = None


def _key(obj: dict[str, Any]) -> tuple[str, str]:
    return (str(obj.get("kind")), str(obj["metadata"]["name"]))


def apply_children(
    kube: Kube, desired: list[dict[str, Any]], report: PassReport, *, first: bool = False
) -> dict[tuple[str, str], dict[str, Any]]:
    """Apply each desired child unless its live copy already matches; return live copies.

    Args:
        first: the DSD has never been planned, so its children cannot exist yet (or were
            made by an interrupted first pass of this same plan): apply without reading.
    """
    live_by_key: dict[tuple[str, str], dict[str, Any]] = {}
    for raw in desired:
        if kube.resource(raw["apiVersion"], raw["kind"]) is None:  # CRD not installed
            report.skipped.append(f"{raw['kind']} ({raw['apiVersion']})")
            continue
        obj = stamp(raw)
        meta = obj["metadata"]
        live = (
            None
            if first
            else kube.get(obj["apiVersion"], obj["kind"], meta.get("namespace"), meta["name"])
        )
        label = f"{obj['kind']}/{meta['name']}"
        if needs_apply(obj, live):
            live = kube.apply(obj)
            report.applied.append(label)
        else:
            report.unchanged.append(label)
        live_by_key[_key(obj)] = live or obj
    return live_by_key


def prune_children(
    kube: Kube,
    namespace: str,
    name: str,
    uid: str,
    *,
    keep: set[tuple[str, str]],
    report: PassReport,
    kinds: tuple[tuple[str, str], ...] = PRUNE_KINDS,
) -> None:
    """Delete children of the DSD (by label and owner uid) that are no longer desired."""
    for api_version, kind in kinds:
        if kube.resource(api_version, kind) is None:
            continue
        for obj in kube.list(api_version, kind, namespace, owner_selector(name)):
            if _key(obj) in keep or not owned_by(obj, uid):
                continue
            kube.delete(api_version, kind, namespace, obj["metadata"]["name"])
            report.pruned.append(f"{kind}/{obj['metadata']['name']}")


def list_workloads(kube: Kube, namespace: str, name: str, uid: str) -> list[WorkloadState]:
    """Live workloads owned by the DSD."""
    out = []
    for api_version, kind in WORKLOAD_KINDS:
        if kube.resource(api_version, kind) is None:
            continue
        out += [
            workload_state(o)
            for o in kube.list(api_version, kind, namespace, owner_selector(name))
            if owned_by(o, uid)
        ]
    return out


def write_status(
    kube: Kube,
    namespace: str,
    name: str,
    compute: Callable[[dict[str, Any] | None], dict[str, Any]],
    attempts: int = 5,
) -> bool:
    """GET the DSD, compute its status, patch the changed keys; retry on conflicts.

    Returns True when a patch was sent.
    """
    for _ in range(attempts):
        live = kube.get(API_VERSION, KIND, namespace, name)
        if live is None or live["metadata"].get("deletionTimestamp"):
            return False
        current = live.get("status")
        patch = status_patch(current, compute(current))
        if not patch:
            return False
        try:
            kube.patch_status(
                API_VERSION,
                KIND,
                namespace,
                name,
                status=patch,
                resource_version=live["metadata"].get("resourceVersion"),
            )
            return True
        except KubeError as exc:
            if exc.status != 409:
                raise
    raise KubeError(f"status of {namespace}/{name} kept conflicting", 409)


def missing_apis(result: PlanResult, skipped: list[str]) -> PlanResult:
    """Fold children the cluster cannot store (their CRD is absent) into the outcome.

    A missing workload API (LeaderWorkerSet for a multi-node plan) means the plan cannot
    run: ``Planned=False``. Missing optional integrations (ServiceMonitor, Istio, KEDA...)
    are named in the Planned message and the DSD is served without them.
    """
    names = ", ".join(skipped)
    workload_missing = any(s.split(" ")[0] in {k for _, k in WORKLOAD_KINDS} for s in skipped)
    if workload_missing:
        message = (
            f"the cluster does not serve {names}: install its CRD and controller, or "
            "change placement so that one node holds a replica"
        )
        return PlanResult(PlanOutcome(False, None, "MissingAPI", message), result.dsd, None)
    outcome = result.outcome
    message = f"{outcome.message} (not created, CRD not installed: {names})"
    if not outcome.ok:
        return result
    return PlanResult(
        PlanOutcome(outcome.ok, outcome.plan, outcome.reason, message), result.dsd, result.plan
    )


def reconcile(
    body: dict[str, Any],
    nodes: list[dict[str, Any]],
    kube: Kube,
    emit: Emit,
    result: PlanResult | None = None,
    *,
    analysis: AnalysisRun | None = None,
) -> PassReport:
    """Run one full pass for the DSD ``body`` against the node inventory ``nodes``.

    Args:
        analysis: a canary analysis run made just now (the canary timer), if any.
    """
    meta = body["metadata"]
    namespace, name, uid = meta["namespace"], meta["name"], meta["uid"]
    generation = int(meta.get("generation") or 1)
    result = result or plan_outcome(body, nodes)
    report = PassReport(outcome=result.outcome)
    url: str | None = None
    selector: str | None = None
    workload_kinds = {k for _, k in WORKLOAD_KINDS}
    desired: list[dict[str, Any]] = []
    canary: dict[str, Any] | None = None
    events: list[EventSpec] = []
    now = now_rfc3339()
    first = not (body.get("status") or {}).get("plan")
    if result.outcome.ok and result.dsd is not None and result.plan is not None:
        decision = drive_canary(kube, result.dsd, result.plan, now, analysis, first=first)
        if decision is not None and decision.status is not None:
            canary, events = decision.status.to_k8s(), decision.events
        desired = render_children(result.dsd, result.plan)
        unserved = [
            f"{c['kind']} ({c['apiVersion']})"
            for c in desired
            if c["kind"] in workload_kinds and kube.resource(c["apiVersion"], c["kind"]) is None
        ]
        if unserved:  # the plan cannot run here: deploy nothing of it
            result = missing_apis(result, unserved)
    if result.outcome.ok and result.dsd is not None and result.plan is not None:
        live = apply_children(kube, desired, report, first=first)
        keep = set(live)
        if stable_held(result.dsd):  # the stable workload serves until promotion
            keep |= {(kind, workload_name(result.dsd, multi_node=m)) for kind, m in HELD}
        if not first:  # before the first plan there is nothing of an older plan to prune
            prune_children(kube, namespace, name, uid, keep=keep, report=report)
        workloads = [workload_state(o) for (kind, _), o in live.items() if kind in workload_kinds]
        if stable_held(result.dsd):
            stable = workload_name(result.dsd, multi_node=result.plan.multi_node)
            workloads += [w for w in list_workloads(kube, namespace, name, uid) if w.name == stable]
        url, selector = endpoint(result.dsd), selector_string(result.dsd)
        if report.skipped:
            result = missing_apis(result, report.skipped)
    else:
        workloads = list_workloads(kube, namespace, name, uid)
    events = plan_events(body.get("status"), result.outcome) + events
    report.status_written = write_status(
        kube,
        namespace,
        name,
        lambda cur: compute_status(
            cur,
            generation,
            result.outcome,
            workloads,
            now=now,
            endpoint=url,
            selector=selector,
            canary=canary,
        ),
    )
    for event in events:
        emit(event)
    log.info(
        "reconciled",
        namespace=namespace,
        name=name,
        generation=generation,
        planned=result.outcome.ok,
        reason=result.outcome.reason,
        applied=len(report.applied),
        unchanged=len(report.unchanged),
        pruned=len(report.pruned),
        status_written=report.status_written,
    )
    return report


def refresh_status(
    kube: Kube,
    namespace: str,
    name: str,
    workloads: list[WorkloadState],
    known: dict[str, Any] | None = None,
) -> bool:
    """Recompute the workload-derived status, keeping the recorded plan.

    Args:
        known: the status as last seen (e.g. a timer's body); when recomputing it
            changes nothing, no request at all is sent.
    """

    def compute(cur: dict[str, Any] | None) -> dict[str, Any]:
        if not any(c.get("type") == "Planned" for c in (cur or {}).get("conditions") or []):
            return dict(cur or {})  # the first pass has not recorded a plan yet: leave it be
        return compute_status(
            cur, 0, None, workloads, now=now_rfc3339(), endpoint=(cur or {}).get("endpoint")
        )

    if known is not None and not status_patch(known, compute(known)):
        return False
    return write_status(kube, namespace, name, compute)


def delete_children(kube: Kube, namespace: str, name: str, uid: str) -> list[str]:
    """Delete every child of the DSD now (owner references would also collect them)."""
    report = PassReport()
    prune_children(kube, namespace, name, uid, keep=set(), report=report)
    return report.pruned
