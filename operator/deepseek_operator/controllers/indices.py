"""The kopf indices of the operator and how handlers read them (pure functions).

Kopf calls the ``index_*`` functions for every object it watches and keeps what they
return in memory, so handlers look up nodes, a DSD's workloads and the DSDs naming a
ConfigMap without a LIST. Registered by :func:`.handlers.register` under these ids:

    gpu_nodes              node name → projected Node (what planning reads)
    workloads_deployments  (namespace, DSD) → its Deployments
    workloads_lws          (namespace, DSD) → its LeaderWorkerSets (when served)
    config_refs            (namespace, ConfigMap) → DSDs whose spec.model.configRef names it
"""

from __future__ import annotations

from typing import Any

import kopf

from .kinds import owner_name
from .model_config import config_map_key
from .nodes import project_node
from .status import WorkloadState, workload_state

NodeIndex = kopf.Index[str, dict[str, Any]]
"""``gpu_nodes``: node name → its projection (:func:`.nodes.project_node`)."""
WorkloadIndex = kopf.Index[tuple[str, str], dict[str, Any]]
"""``workloads_*``: (namespace, DSD name) → the live Deployments / LeaderWorkerSets."""
ConfigRefIndex = kopf.Index[tuple[str, str], str]
"""``config_refs``: (namespace, ConfigMap name) → names of the DSDs whose configRef it is."""


def index_gpu_node(*, name: str, body: kopf.Body, **_: Any) -> dict[str, dict[str, Any]]:
    """``gpu_nodes``: what planning reads of each Node."""
    return {name: project_node(dict(body))}


def index_workload(
    *, namespace: str, body: kopf.Body, **_: Any
) -> dict[tuple[str, str], dict[str, Any]] | None:
    """``workloads_*``: a DSD's workloads under its key, for status without a LIST."""
    owner = owner_name(dict(body))
    return {(namespace, owner): dict(body)} if owner else None


def index_config_ref(*, name: str, body: kopf.Body, **_: Any) -> dict[tuple[str, str], str] | None:
    """``config_refs``: a DSD under the ConfigMap its ``spec.model.configRef`` names."""
    key = config_map_key(body)
    return {key: name} if key else None


def nodes_of(index: NodeIndex) -> list[dict[str, Any]]:
    """Every projected Node in the ``gpu_nodes`` index."""
    return [node for store in index.values() for node in store]


def workloads_of(namespace: str, name: str, *indices: WorkloadIndex | None) -> list[WorkloadState]:
    """The workloads of the DSD ``namespace/name`` in the ``workloads_*`` indices."""
    key = (namespace, name)
    return [
        workload_state(obj) for index in indices if index and key in index for obj in index[key]
    ]
