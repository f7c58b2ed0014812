"""Writing a DSD's status: GET, compute, patch only what changed, retry on conflicts.

Called by :func:`.reconcile.reconcile` at the end of a pass and by the workload watch and
resync timer in :mod:`.handlers` (:func:`refresh_status`, which keeps the recorded plan).
The status itself is computed by the pure :func:`.status.compute_status`; this module
only moves it to and from the apiserver, guarded by ``resourceVersion``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from deepseek_operator.api import API_VERSION, KIND
from deepseek_operator.api.status import DeepSeekDeploymentStatus

from .kube import Kube, KubeError
from .status import WorkloadState, compute_status, parse_status, status_patch


def now_rfc3339() -> str:
    """The current time as RFC 3339 UTC, to the second (condition timestamps)."""
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def write_status(
    kube: Kube,
    namespace: str,
    name: str,
    compute: Callable[[DeepSeekDeploymentStatus | None], DeepSeekDeploymentStatus | None],
    attempts: int = 5,
) -> bool:
    """GET the DSD, compute its status, patch the changed keys; retry on conflicts.

    ``compute`` gets the live status (None when there is none) and returns the desired
    one, or None to leave it as it is. Returns True when a patch was sent.
    """
    for _ in range(attempts):
        live = kube.get(API_VERSION, KIND, namespace, name)
        if live is None or live["metadata"].get("deletionTimestamp"):
            return False
        current = live.get("status")
        desired = compute(parse_status(current) if current else None)
        patch = status_patch(current, desired) if desired is not None else {}
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

    def compute(cur: DeepSeekDeploymentStatus | None) -> DeepSeekDeploymentStatus | None:
        if cur is None or not cur.plan_recorded():
            return None  # the first pass has not recorded a plan yet: leave it be
        return compute_status(cur, 0, None, workloads, now=now_rfc3339(), endpoint=cur.endpoint)

    if known is not None:
        desired = compute(parse_status(known))
        if desired is None or not status_patch(known, desired):
            return False
    return write_status(kube, namespace, name, compute)
