"""Serving workloads: a Deployment for single-node replicas, a LeaderWorkerSet
(``leaderworkerset.x-k8s.io/v1``) for replicas spanning nodes (pipeline stages).

One workload per track: ``<name>`` (stable) and, while a canary runs, ``<name>-canary``.
Replicas are left to the autoscaler when ``spec.autoscaling`` is set. Pure; called by
:func:`deepseek_operator.render.render_children`.
"""

from __future__ import annotations

import math
from typing import Any

from deepseek_operator.api.resource import DeepSeekDeployment
from deepseek_operator.planning.plan import Plan
from deepseek_operator.render.common import (
    ANNOTATION_PLAN,
    LABEL_TRACK,
    base_labels,
    metadata,
    pod_selector,
    spec_revision,
    workload_name,
)
from deepseek_operator.render.pod import pod_template, startup_budget_seconds


def _replicas(dsd: DeepSeekDeployment, track: str, weight: int) -> int | None:
    desired = dsd.spec.desired_replicas()
    if track == "canary":
        return max(1, math.ceil(desired * weight / 100))
    return None if dsd.spec.autoscaling is not None else desired


def workload(
    dsd: DeepSeekDeployment, plan: Plan, track: str = "stable", weight: int = 0
) -> dict[str, Any]:
    """The Deployment or LeaderWorkerSet of one track.

    Args:
        weight: percent of traffic on the canary; sizes the ``canary`` track's replicas.
    """
    name = workload_name(dsd, track, plan.multi_node)
    selector = pod_selector(dsd, track)
    labels = {**base_labels(dsd, "server"), **selector}
    revision = spec_revision(dsd)
    meta = metadata(
        dsd,
        name,
        "server",
        {LABEL_TRACK: track},
        {ANNOTATION_PLAN: f"{plan.gpu_summary} TPxPPxEP={plan.layout}"},
    )
    replicas = _replicas(dsd, track, weight)
    if not plan.multi_node:
        ru = dsd.spec.rollout.rolling_update
        spec: dict[str, Any] = {}
        if replicas is not None:
            spec["replicas"] = replicas
        spec.update(
            {
                "revisionHistoryLimit": 3,
                "progressDeadlineSeconds": startup_budget_seconds(dsd, plan) + 600,
                "strategy": {
                    "type": "RollingUpdate",
                    "rollingUpdate": {
                        "maxSurge": ru.max_surge,
                        "maxUnavailable": ru.max_unavailable,
                    },
                },
                "selector": {"matchLabels": selector},
                "template": pod_template(dsd, plan, labels, "server", revision),
            }
        )
        return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta, "spec": spec}
    lws: dict[str, Any] = {}
    if replicas is not None:
        lws["replicas"] = replicas
    lws.update(
        {
            "startupPolicy": "LeaderCreated",
            "rolloutStrategy": {
                "type": "RollingUpdate",
                "rollingUpdateConfiguration": {"maxUnavailable": 1, "maxSurge": 0},
            },
            "leaderWorkerTemplate": {
                "size": plan.nodes_per_replica,
                "restartPolicy": "RecreateGroupOnPodRestart",
                "leaderTemplate": pod_template(dsd, plan, labels, "server", revision),
                "workerTemplate": pod_template(dsd, plan, labels, "worker", revision),
            },
        }
    )
    return {
        "apiVersion": "leaderworkerset.x-k8s.io/v1",
        "kind": "LeaderWorkerSet",
        "metadata": meta,
        "spec": lws,
    }
