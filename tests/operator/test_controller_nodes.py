"""Unit tests of the node projection and inventory fingerprint."""

from __future__ import annotations

import pytest

from deepseek_operator.controllers.nodes import fingerprint, is_gpu_node, project_node
from deepseek_operator.controllers.peering import peering_crds, peering_object

pytestmark = pytest.mark.unit


def _node(name: str, gpus: str | None = "8", heartbeat: str = "t0") -> dict:
    alloc = {"cpu": "96"} | ({"nvidia.com/gpu": gpus} if gpus else {})
    return {
        "metadata": {
            "name": name,
            "labels": {"nvidia.com/gpu.product": "NVIDIA-H200"} if gpus else {},
            "resourceVersion": heartbeat,
            "managedFields": [{}],
        },
        "spec": {
            "taints": [
                {"key": "nvidia.com/gpu", "effect": "NoSchedule"},
                {"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"},
            ]
        },
        "status": {
            "allocatable": alloc,
            "capacity": alloc,
            "conditions": [{"type": "Ready", "status": "True", "lastHeartbeatTime": heartbeat}],
        },
    }


def test_projection_drops_heartbeats_and_transient_taints() -> None:
    p = project_node(_node("a"))
    assert p["metadata"]["name"] == "a"
    assert "resourceVersion" not in p["metadata"]
    assert p["spec"]["taints"] == [{"key": "nvidia.com/gpu", "effect": "NoSchedule"}]
    assert p["status"]["conditions"] == [{"type": "Ready", "status": "True"}]


def test_fingerprint_changes_only_with_gpu_inventory() -> None:
    base = [project_node(_node("a")), project_node(_node("b"))]
    assert fingerprint(base) == fingerprint(list(reversed(base)))
    beat = [project_node(_node("a", heartbeat="t9")), project_node(_node("b"))]
    assert fingerprint(beat) == fingerprint(base)
    cpu = [*base, project_node(_node("cpu-0", gpus=None))]
    assert not is_gpu_node(cpu[-1])
    assert fingerprint(cpu) == fingerprint(base)
    assert fingerprint(base[:1]) != fingerprint(base)
    fewer = [project_node(_node("a", gpus="4")), project_node(_node("b"))]
    assert fingerprint(fewer) != fingerprint(base)


def test_peering_crds_are_structural_and_match_kopf() -> None:
    crds = {c["metadata"]["name"]: c for c in peering_crds()}
    assert set(crds) == {"clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev"}
    assert crds["clusterkopfpeerings.kopf.dev"]["spec"]["scope"] == "Cluster"
    schema = crds["kopfpeerings.kopf.dev"]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert schema["properties"]["status"]["x-kubernetes-preserve-unknown-fields"] is True
    assert peering_object("x")["kind"] == "ClusterKopfPeering"
    assert peering_object("x", "ns")["metadata"]["namespace"] == "ns"
