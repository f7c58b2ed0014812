"""The serving pod template: engine container, probes, volumes, security, scheduling.

* GPUs: ``nvidia.com/gpu`` requests = limits = the plan's GPUs per pod.
* Scheduling: node selector pinning the planned GPU product (plus the spec's), the GPU
  taint toleration (plus the spec's), the spec's affinity or a preferred spread by host.
* Probes: startup on ``/health`` with a budget scaled to the checkpoint size; liveness on
  ``/health`` every 30 s, restart after 3 failures; readiness on ``/ready`` (vLLM:
  ``/health``).
* Volumes: the model, ``/dev/shm`` (memory emptyDir for NCCL), ``/tmp`` (the root
  filesystem is read-only), API keys, the JWKS, the roles file and content-filter rules
  when configured (whole-volume mounts, no subPath, so Secret and ConfigMap updates
  reach the runtime, which reloads them).
* Security: restricted Pod Security Standard (non-root, no privilege escalation,
  read-only root, RuntimeDefault seccomp, all capabilities dropped).

Pure; called by :mod:`.workload`.
"""

from __future__ import annotations

import math
from typing import Any, Final

from deepseek_operator.api.resource import DeepSeekDeployment
from deepseek_operator.api.validation import duration_seconds
from deepseek_operator.planning.inventory import GPU_RESOURCE
from deepseek_operator.planning.placement import tolerations_of
from deepseek_operator.planning.plan import Plan
from deepseek_operator.render.common import LABEL_DEPLOYMENT, LABEL_REVISION, LABEL_ROLE
from deepseek_operator.render.engine import (
    API_KEYS_DIR,
    FILTER_DIR,
    JWKS_DIR,
    JWKS_KEY,
    ROLES_DIR,
    container_command,
    engine_image,
)
from deepseek_operator.render.source import model_mount

STARTUP_PERIOD_SECONDS: Final = 10
STARTUP_BASE_SECONDS: Final = 600
STARTUP_SECONDS_PER_20GB: Final = 60
UID: Final = 1000


def startup_budget_seconds(dsd: DeepSeekDeployment, plan: Plan) -> int:
    """Seconds a pod may take to load: the spec's, else 10 min + 1 min per 20 GB per node."""
    explicit = dsd.spec.resilience.health.startup_timeout
    if explicit is not None:
        return math.ceil(duration_seconds(explicit))
    per_node = plan.checkpoint_bytes / plan.nodes_per_replica
    return STARTUP_BASE_SECONDS + STARTUP_SECONDS_PER_20GB * math.ceil(per_node / 20e9)


def container_security() -> dict[str, Any]:
    """Restricted container security context."""
    return {
        "runAsNonRoot": True,
        "runAsUser": UID,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _resources(dsd: DeepSeekDeployment, plan: Plan) -> dict[str, Any]:
    gpus = plan.gpus_per_pod
    r = dsd.spec.engine.resources
    cpu = r.cpu or str(4 * gpus + 2)
    memory = r.memory or f"{32 + 16 * gpus}Gi"
    return {
        "requests": {"cpu": cpu, "memory": memory, GPU_RESOURCE: str(gpus)},
        "limits": {"memory": memory, GPU_RESOURCE: str(gpus)},
    }


def _probes(dsd: DeepSeekDeployment, plan: Plan) -> dict[str, Any]:
    h, port = dsd.spec.resilience.health, "http"
    ready_path = "/health" if plan.engine == "vllm" else "/ready"
    budget = startup_budget_seconds(dsd, plan)
    return {
        "startupProbe": {
            "httpGet": {"path": "/health", "port": port},
            "periodSeconds": STARTUP_PERIOD_SECONDS,
            "timeoutSeconds": h.timeout_seconds,
            "failureThreshold": math.ceil(budget / STARTUP_PERIOD_SECONDS),
        },
        "livenessProbe": {
            "httpGet": {"path": "/health", "port": port},
            "periodSeconds": h.period_seconds,
            "timeoutSeconds": h.timeout_seconds,
            "failureThreshold": h.failure_threshold,
        },
        "readinessProbe": {
            "httpGet": {"path": ready_path, "port": port},
            "periodSeconds": 10,
            "timeoutSeconds": h.timeout_seconds,
            "failureThreshold": 3,
        },
    }


def _scheduling(dsd: DeepSeekDeployment, plan: Plan) -> dict[str, Any]:
    p = dsd.spec.placement
    out: dict[str, Any] = {
        "nodeSelector": {**plan.node_selector, **p.node_selector},
        "tolerations": [t.to_k8s() for t in tolerations_of(p)],
    }
    if p.affinity is not None:
        out["affinity"] = p.affinity
    elif plan.nodes_per_replica == 1:
        out["affinity"] = {
            "podAntiAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "weight": 50,
                        "podAffinityTerm": {
                            "topologyKey": "kubernetes.io/hostname",
                            "labelSelector": {"matchLabels": {LABEL_DEPLOYMENT: dsd.name}},
                        },
                    }
                ]
            }
        }
    if p.priority_class_name:
        out["priorityClassName"] = p.priority_class_name
    return out


def _auth_volumes(dsd: DeepSeekDeployment) -> tuple[list[Any], list[Any]]:
    """Volumes and mounts of the JWKS Secret and the roles ConfigMap or Secret."""
    auth = dsd.spec.serving.auth
    volumes: list[Any] = []
    mounts: list[Any] = []
    if auth.jwt is not None and auth.jwt.jwks_secret_ref is not None:
        ref = auth.jwt.jwks_secret_ref
        items = [{"key": ref.key or JWKS_KEY, "path": JWKS_KEY}]
        volumes.append({"name": "jwks", "secret": {"secretName": ref.name, "items": items}})
        mounts.append({"name": "jwks", "mountPath": JWKS_DIR, "readOnly": True})
    if auth.roles_ref is not None:
        r = auth.roles_ref
        items = [{"key": r.key, "path": r.key}]
        source = (
            {"secret": {"secretName": r.name, "items": items}}
            if r.kind == "Secret"
            else {"configMap": {"name": r.name, "items": items}}
        )
        volumes.append({"name": "auth-roles", **source})
        mounts.append({"name": "auth-roles", "mountPath": ROLES_DIR, "readOnly": True})
    return volumes, mounts


def pod_template(
    dsd: DeepSeekDeployment, plan: Plan, labels: dict[str, str], role: str, revision: str
) -> dict[str, Any]:
    """Pod template of a serving pod (``role`` server) or an LWS follower (``worker``)."""
    security = container_security()
    resources = _resources(dsd, plan)
    small = {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"memory": "4Gi"}}
    mount = model_mount(dsd, plan, security, small)
    for init in mount.init_containers:
        init["image"] = init["image"] or engine_image(dsd, plan)
    command, args, env = container_command(dsd, plan, mount.path, role)
    env += [{"name": v.name, "value": v.value} for v in dsd.spec.engine.env]
    mounts = [
        *mount.mounts,
        {"name": "dshm", "mountPath": "/dev/shm"},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    shm_gib = min(64, 8 * plan.gpus_per_pod)
    volumes = [
        *mount.volumes,
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": f"{shm_gib}Gi"}},
        {"name": "tmp", "emptyDir": {"sizeLimit": "20Gi"}},
    ]
    serving = dsd.spec.serving
    if serving.auth.api_keys_secret_ref is not None and plan.engine != "vllm":
        ref = serving.auth.api_keys_secret_ref
        volumes.append(
            {
                "name": "api-keys",
                "secret": {
                    "secretName": ref.name,
                    "items": [{"key": ref.key or "api-keys", "path": "api-keys"}],
                },
            }
        )
        mounts.append({"name": "api-keys", "mountPath": API_KEYS_DIR, "readOnly": True})
    volumes_auth, mounts_auth = _auth_volumes(dsd)
    volumes += volumes_auth
    mounts += mounts_auth
    if serving.content_filter.config_map_ref is not None:
        volumes.append(
            {
                "name": "content-filter",
                "configMap": {
                    "name": serving.content_filter.config_map_ref.name,
                    "items": [
                        {
                            "key": serving.content_filter.config_map_ref.key,
                            "path": serving.content_filter.config_map_ref.key,
                        }
                    ],
                },
            }
        )
        mounts.append({"name": "content-filter", "mountPath": FILTER_DIR, "readOnly": True})
    container: dict[str, Any] = {
        "name": "engine",
        "image": engine_image(dsd, plan),
        "imagePullPolicy": "IfNotPresent",
        "command": command,
        "args": args,
        "env": env,
        "ports": [{"name": "http", "containerPort": dsd.spec.engine.port, "protocol": "TCP"}],
        "resources": resources,
        "securityContext": security,
        "volumeMounts": mounts,
    }
    if role == "server":
        container.update(_probes(dsd, plan))
        container["lifecycle"] = {"preStop": {"sleep": {"seconds": 10}}}
    spec: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": 120,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": UID,
            "runAsGroup": UID,
            "fsGroup": UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        **_scheduling(dsd, plan),
    }
    if mount.init_containers:
        spec["initContainers"] = mount.init_containers
    spec["containers"] = [container]
    spec["volumes"] = volumes
    return {
        "metadata": {"labels": {**labels, LABEL_ROLE: role, LABEL_REVISION: revision}},
        "spec": spec,
    }
