"""One reconcile pass of a DeepSeekDeployment: plan → render → apply → prune → status.

Called by the kopf handlers in :mod:`.handlers` (create, update, resume, the
node-inventory timer, ConfigMap and workload events).  Decisions are pure functions from
:mod:`.planning_step`, :mod:`.canary`, :mod:`.semantic` and :mod:`.status`; this module
only sequences them around the API calls of :class:`.kube.Kube`.

A pass over an unchanged object sends no write: children whose live copy already
holds every desired field (and the same ``deepseek.ai/applied-hash``) are not
applied, unchanged status is not patched, and no Event is posted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import structlog

from deepseek_operator.api.status import AnalysisRun, CanaryStatus
from deepseek_operator.render import (
    endpoint,
    render_children,
    selector_string,
    stable_held,
    workload_name,
)

from .canary_pass import drive_canary
from .events import Emit, EventSpec
from .kinds import (
    DEPLOYMENT,
    LEADER_WORKER_SET,
    PRUNE_KINDS,
    WORKLOAD_KINDS,
    owned_by,
    owner_selector,
)
from .kube import Kube, KubeError
from .model_config import config_map_key
from .planning_step import PlanResult, missing_apis, plan_events, plan_outcome
from .semantic import needs_apply, stamp
from .status import (
    PlanOutcome,
    WorkloadState,
    compute_status,
    parse_status,
    workload_state,
)
from .status_writer import now_rfc3339, write_status

STABLE_WORKLOADS = ((DEPLOYMENT[1], False), (LEADER_WORKER_SET[1], True))
"""(kind, multi_node) of each form the stable workload may take; a held one is kept."""
log = structlog.get_logger("deepseek_operator.reconcile")


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


def plan_pass(kube: Kube, body: dict[str, Any], nodes: list[dict[str, Any]]) -> PlanResult:
    """Plan the DSD ``body``, reading the ConfigMap its ``spec.model.configRef`` names."""
    ref = config_map_key(body)
    config_map = kube.get("v1", "ConfigMap", ref[0], ref[1]) if ref is not None else None
    return plan_outcome(body, nodes, config_map)


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
    recorded = parse_status(body.get("status"))
    result = result or plan_pass(kube, body, nodes)
    report = PassReport(outcome=result.outcome)
    url: str | None = None
    selector: str | None = None
    workload_kinds = {k for _, k in WORKLOAD_KINDS}
    desired: list[dict[str, Any]] = []
    events: list[EventSpec] = []
    now = now_rfc3339()
    first = recorded.plan is None
    rollout: CanaryStatus | None = None  # the canary state rendering goes by
    record: CanaryStatus | None = None  # the next status.canary; None keeps the recorded one
    if result.outcome.ok and result.dsd is not None and result.plan is not None:
        canary = drive_canary(kube, result.dsd, result.plan, now, analysis, first=first)
        rollout = canary.state
        if canary.decision is not None and canary.decision.status is not None:
            record, events = canary.decision.status, canary.decision.events
        desired = render_children(result.dsd, result.plan, rollout, recorded.circuit)
        unserved = [
            f"{c['kind']} ({c['apiVersion']})"
            for c in desired
            if c["kind"] in workload_kinds and kube.resource(c["apiVersion"], c["kind"]) is None
        ]
        if unserved:  # the plan cannot run here: deploy nothing of it
            result = missing_apis(result, unserved)
    apply_failure: KubeError | None = None
    if result.outcome.ok and result.dsd is not None and result.plan is not None:
        try:
            live = apply_children(kube, desired, report, first=first)
        except KubeError as exc:  # recorded below, then raised again so kopf retries
            apply_failure = exc
    if apply_failure is not None:
        workloads = list_workloads(kube, namespace, name, uid)
        events.append(EventSpec("Warning", "ApplyFailed", str(apply_failure)[:1000]))
    elif result.outcome.ok and result.dsd is not None and result.plan is not None:
        keep = set(live)
        held = stable_held(result.dsd, rollout)
        if held:  # the stable workload serves until promotion
            keep |= {
                (kind, workload_name(result.dsd, multi_node=m)) for kind, m in STABLE_WORKLOADS
            }
        if not first:  # before the first plan there is nothing of an older plan to prune
            prune_children(kube, namespace, name, uid, keep=keep, report=report)
        workloads = [workload_state(o) for (kind, _), o in live.items() if kind in workload_kinds]
        if held:
            stable = workload_name(result.dsd, multi_node=result.plan.multi_node)
            workloads += [w for w in list_workloads(kube, namespace, name, uid) if w.name == stable]
        url, selector = endpoint(result.dsd), selector_string(result.dsd)
        if report.skipped:
            result = missing_apis(result, report.skipped)
    else:
        workloads = list_workloads(kube, namespace, name, uid)
    events = plan_events(recorded, result.outcome) + events
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
            canary=record,
            apply_error=_apply_message(apply_failure),
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
    if apply_failure is not None:
        raise apply_failure
    return report


def _apply_message(failure: KubeError | None) -> str | None:
    """The condition message of a refused child: the apiserver's own words, bounded."""
    if failure is None:
        return None
    return f"the apiserver refused a child object: {str(failure)[:800]}"


def delete_children(kube: Kube, namespace: str, name: str, uid: str) -> list[str]:
    """Delete every child of the DSD now (owner references would also collect them)."""
    report = PassReport()
    prune_children(kube, namespace, name, uid, keep=set(), report=report)
    return report.pruned
