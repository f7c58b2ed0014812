"""Names, labels, owner references and revisions shared by every rendered child.

Every child carries ``app.kubernetes.io/managed-by: deepseek-operator`` and
``deepseek.ai/deployment: <name>`` (the controller lists and prunes children by them)
and an ownerReference to the DSD with ``controller: true`` (garbage collection deletes
them with it). Pure; used by the other render modules and by the controller.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Final

from deepseek_operator.api.resource import DeepSeekDeployment
from deepseek_operator.api.status import CanaryStatus

MANAGED_BY: Final = "deepseek-operator"
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
LABEL_NAME: Final = "app.kubernetes.io/name"
LABEL_INSTANCE: Final = "app.kubernetes.io/instance"
LABEL_COMPONENT: Final = "app.kubernetes.io/component"
LABEL_PART_OF: Final = "app.kubernetes.io/part-of"
LABEL_DEPLOYMENT: Final = "deepseek.ai/deployment"
LABEL_TRACK: Final = "deepseek.ai/track"  # stable | canary
LABEL_ROLE: Final = "deepseek.ai/role"  # server (answers HTTP) | worker (LWS follower)
LABEL_REVISION: Final = "deepseek.ai/revision"
LABEL_SERVICE: Final = "deepseek.ai/service"  # api | headless
ANNOTATION_PLAN: Final = "deepseek.ai/plan"
CLUSTER_DOMAIN: Final = "cluster.local"
SERVICE_PORT: Final = 80
CIRCUIT_ROUTING_KEYS: Final = ("window", "coolDown", "halfOpenPercent", "closeAfter", "fallback")
"""``resilience.circuitBreaker`` fields that only steer traffic (not in the revision hash)."""


def base_labels(dsd: DeepSeekDeployment, component: str) -> dict[str, str]:
    """Labels on every child: managed-by, deployment name, component."""
    return {
        LABEL_NAME: "deepseek",
        LABEL_INSTANCE: dsd.name,
        LABEL_COMPONENT: component,
        LABEL_PART_OF: "deepseek-k8s",
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_DEPLOYMENT: dsd.name,
    }


def metadata(
    dsd: DeepSeekDeployment,
    name: str,
    component: str,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    """ObjectMeta of a child: name, namespace, labels, ownerReference to the DSD."""
    meta: dict[str, Any] = {
        "name": name,
        "namespace": dsd.namespace,
        "labels": {**base_labels(dsd, component), **(labels or {})},
    }
    if annotations:
        meta["annotations"] = dict(annotations)
    meta["ownerReferences"] = [dsd.owner_reference()]
    return meta


def pod_selector(dsd: DeepSeekDeployment, track: str = "stable") -> dict[str, str]:
    """Immutable selector labels of one workload's pods."""
    return {LABEL_DEPLOYMENT: dsd.name, LABEL_TRACK: track}


def selector_string(dsd: DeepSeekDeployment) -> str:
    """``status.selector`` for the scale subresource: the stable serving pods."""
    return ",".join(f"{k}={v}" for k, v in {**pod_selector(dsd), LABEL_ROLE: "server"}.items())


def service_host(dsd: DeepSeekDeployment) -> str:
    """Cluster-local DNS name of the API Service."""
    return f"{dsd.name}.{dsd.namespace}.svc.{CLUSTER_DOMAIN}"


def endpoint(dsd: DeepSeekDeployment) -> str:
    """``status.endpoint``: base URL of the OpenAI-compatible API inside the cluster."""
    return f"http://{service_host(dsd)}/v1"


def spec_revision(dsd: DeepSeekDeployment) -> str:
    """Hash of the spec sections that change the pods; names a canary revision."""
    s = dsd.spec
    parts = {
        k: getattr(s, k).to_k8s()
        for k in ("model", "engine", "placement", "parallelism", "serving", "resilience")
    }
    breaker = parts["resilience"].get("circuitBreaker", {})
    for key in CIRCUIT_ROUTING_KEYS:  # routing only: no new pods, no canary
        breaker.pop(key, None)
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()
    return digest[:10]


def canary_active(dsd: DeepSeekDeployment, canary: CanaryStatus | None) -> bool:
    """True while a canary runs (``canary.phase == Progressing`` under a Canary rollout).

    Then the stable workload is *not* rendered (the controller must leave the existing
    one as it is) and ``<name>-canary`` serves the new revision.

    Args:
        canary: the rollout state in effect (the canary driver's decision, or the
            recorded ``status.canary``); None when no canary was ever started.
    """
    return (
        dsd.spec.rollout.strategy == "Canary"
        and canary is not None
        and canary.phase == "Progressing"
    )


def stable_held(dsd: DeepSeekDeployment, canary: CanaryStatus | None) -> bool:
    """True when the live stable workload must be left as it is (not rendered, not pruned).

    That is while a canary runs, and after a canary of the *current* spec revision failed:
    the stable workload keeps serving the old revision until the spec changes again.
    """
    if canary_active(dsd, canary):
        return True
    return (
        dsd.spec.rollout.strategy == "Canary"
        and canary is not None
        and canary.phase == "Failed"
        and canary.revision == spec_revision(dsd)
    )


def canary_weight(dsd: DeepSeekDeployment, canary: CanaryStatus | None) -> int:
    """Percent of traffic on the canary now (0 outside a canary)."""
    if canary is None or not canary_active(dsd, canary):
        return 0
    return canary.weight or 0


def pod_name_regex(dsd: DeepSeekDeployment) -> str:
    """PromQL regex matching exactly this DSD's pod names (Deployment or LWS, both tracks),
    and not those of another DSD whose name merely starts with this one's."""
    return f"{dsd.name}-(canary-)?([a-z0-9]{{6,10}}-[a-z0-9]{{5}}|lws-[0-9]+(-[0-9]+)?)"


def canary_pod_regex(dsd: DeepSeekDeployment) -> str:
    """PromQL regex matching exactly the pods of this DSD's canary workload."""
    return f"{dsd.name}-canary-([a-z0-9]{{6,10}}-[a-z0-9]{{5}}|lws-[0-9]+(-[0-9]+)?)"


def workload_name(dsd: DeepSeekDeployment, track: str = "stable", multi_node: bool = False) -> str:
    """Name of the Deployment (``<name>``, ``<name>-canary``) or LeaderWorkerSet
    (``<name>-lws``, ``<name>-canary-lws``: the LWS controller creates a headless Service
    named after the LWS, which must not collide with the API Service ``<name>``)."""
    base = dsd.name if track == "stable" else f"{dsd.name}-canary"
    return f"{base}-lws" if multi_node else base
