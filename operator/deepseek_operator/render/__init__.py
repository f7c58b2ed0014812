"""Pure rendering: (DeepSeekDeployment, Plan) -> the Kubernetes objects that serve it.

:func:`render_children` returns plain dicts in apply order (storage, Services, workloads,
disruption budget, autoscaler, traffic policy, network policy, monitoring). No I/O and no
Kubernetes client (enforced by ``.importlinter``); the controller applies the list with
server-side apply, the CLI prints it, golden tests compare it.
"""

from __future__ import annotations

import json
from typing import Any

from deepseek_operator.api.resource import DeepSeekDeployment
from deepseek_operator.api.status import CanaryStatus, CircuitStatus
from deepseek_operator.planning.plan import Plan
from deepseek_operator.render.autoscaling import autoscaler
from deepseek_operator.render.common import (
    LABEL_DEPLOYMENT,
    LABEL_INSTANCE,
    LABEL_MANAGED_BY,
    LABEL_REVISION,
    MANAGED_BY,
    canary_active,
    canary_pod_regex,
    canary_weight,
    endpoint,
    selector_string,
    spec_revision,
    stable_held,
    workload_name,
)
from deepseek_operator.render.istio import destination_rule, virtual_service
from deepseek_operator.render.monitoring import prometheus_rule, service_monitor
from deepseek_operator.render.network import (
    api_service,
    disruption_budget,
    headless_service,
    network_policy,
)
from deepseek_operator.render.source import cache_claim
from deepseek_operator.render.workload import workload

__all__ = [
    "LABEL_DEPLOYMENT",
    "LABEL_INSTANCE",
    "LABEL_MANAGED_BY",
    "LABEL_REVISION",
    "MANAGED_BY",
    "canary_active",
    "canary_pod_regex",
    "canary_weight",
    "endpoint",
    "render_children",
    "selector_string",
    "spec_revision",
    "stable_held",
    "workload_name",
]


def render_children(
    dsd: DeepSeekDeployment,
    plan: Plan,
    canary: CanaryStatus | None = None,
    circuit: CircuitStatus | None = None,
) -> list[dict[str, Any]]:
    """Every child object of ``dsd`` under ``plan``, in apply order.

    While a canary runs (:func:`canary_active`) the list holds ``<name>-canary`` and *not*
    the stable workload: the controller must keep the existing stable workload as it is
    (not prune it) until the canary is promoted. After a canary of the current revision
    failed (:func:`stable_held`) it holds neither workload: the old stable one serves on.

    Args:
        canary: the canary rollout state in effect (the controller's canary decision);
            None when no canary runs or ran. ``dsd.status`` is not read.
        circuit: the circuit breaker state per track (the recorded ``status.circuit``);
            an open track's traffic moves away in the VirtualService.
    """
    weight = canary_weight(dsd, canary)
    if canary_active(dsd, canary):
        workloads = [workload(dsd, plan, "canary", weight)]
    elif stable_held(dsd, canary):  # the canary failed: no canary, the old stable workload stays
        workloads = []
    else:
        workloads = [workload(dsd, plan, "stable")]
    children = [
        cache_claim(dsd),
        headless_service(dsd),
        api_service(dsd),
        *workloads,
        disruption_budget(dsd),
        autoscaler(dsd, plan),
        destination_rule(dsd),
        virtual_service(dsd, weight, circuit),
        network_policy(dsd),
        service_monitor(dsd),
        prometheus_rule(dsd),
    ]
    # A JSON round trip unshares nested dicts (one security context is reused by several
    # containers): callers may mutate one part without touching another, YAML has no aliases.
    out: list[dict[str, Any]] = json.loads(json.dumps([c for c in children if c is not None]))
    return out
