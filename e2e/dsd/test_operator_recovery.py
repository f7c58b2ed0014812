"""E2E: the operator converges after SIGKILL and re-plans when GPU nodes come or go.

- SIGKILL in the middle of reconciling several DSDs, then a restart: every DSD becomes
  Ready with exactly one set of children (no duplicates, no orphans, one ReplicaSet).
- A DSD asking for a GPU product the cluster lacks stays ``Planned=False`` until nodes
  of that product join; it is then re-planned and served there. When they leave again it
  reports the failed re-plan while keeping what serves (``Degraded``).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.devcluster import ClusterInfo, load_pools, render_nodes
from e2e.operator_harness import (
    Kube,
    OperatorProcess,
    Scope,
    children,
    condition,
    dsd,
    find_condition,
    get_dsd,
    is_true,
    pods_by_pool,
    wait_current,
    wait_for,
)

pytestmark = pytest.mark.e2e
DISTILL_7B = "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B"
DISTILL_1_5B = "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B"


def test_sigkill_mid_reconcile_converges_without_duplicates_or_orphans(
    cluster: ClusterInfo, kube: Kube, scope: Scope, namespace: str, tmp_path: Path
) -> None:
    names = [f"k{i}" for i in range(6)]
    first = OperatorProcess(
        cluster.kubeconfig, tmp_path / "first.log", resync_seconds=3, namespaces=(scope.pattern,)
    )
    first.start()
    first.wait_started()
    kube.apply(
        [
            {
                **dsd(n, DISTILL_1_5B, products=["A100"]),
                "metadata": {"name": n, "namespace": namespace},
            }
            for n in names
        ]
    )
    wait_for("first writes", lambda: len(first.writes()) >= 3, 60, interval=0.05)
    first.kill()
    killed_after = len(first.writes())
    assert killed_after < 8 * len(names), "the kill should land mid-reconcile"

    second = OperatorProcess(
        cluster.kubeconfig, tmp_path / "second.log", resync_seconds=3, namespaces=(scope.pattern,)
    )
    second.start()
    try:
        second.wait_started()
        ready = {n: wait_current(kube, namespace, n) for n in names}
        check_children(kube, namespace, names, ready)
        kube("delete", "dsd", "--all", "-n", namespace, "--timeout=60s")
    finally:
        second.stop()


def check_children(
    kube: Kube, namespace: str, names: list[str], ready: dict[str, dict[str, Any]]
) -> None:
    """Exactly one set of children per DSD, all owned by a live DSD, one ReplicaSet each."""
    per_dsd: Counter[tuple[str, str]] = Counter()
    for child in children(kube, namespace):
        owners = child["metadata"].get("ownerReferences") or []
        assert len(owners) == 1 and owners[0]["kind"] == "DeepSeekDeployment", child
        owner = owners[0]["name"]
        assert owner in ready, f"orphan {child['kind']}/{child['metadata']['name']}"
        assert owners[0]["uid"] == ready[owner]["metadata"]["uid"]
        per_dsd[(owner, child["kind"])] += 1
    for n in names:
        assert per_dsd[(n, "Deployment")] == 1
        assert per_dsd[(n, "Service")] == 2  # API + headless
    shapes = {tuple(sorted((k, c) for (o, k), c in per_dsd.items() if o == n)) for n in names}
    assert len(shapes) == 1, f"DSDs ended with different children: {shapes}"
    replicasets = kube.json("get", "replicasets", "-n", namespace)["items"]
    assert Counter(rs["metadata"]["ownerReferences"][0]["name"] for rs in replicasets) == {
        n: 1 for n in names
    }
    pods = kube.json("get", "pods", "-n", namespace)["items"]
    assert len(pods) == len(names)
    assert all(p["status"].get("phase") == "Running" for p in pods)


B200_POOLS = {
    "region": "local-1",
    "pools": [
        {
            "name": "b200",
            "namePrefix": "e2e-b200",
            "count": 1,
            "instanceType": "p6-b200.48xlarge",
            "zones": ["local-1a"],
            "cpu": "192",
            "memory": "2048Gi",
            "pods": 110,
            "gpu": {
                "product": "NVIDIA-B200",
                "family": "blackwell",
                "count": 8,
                "memoryMiB": 183359,
            },
        }
    ],
}


@pytest.fixture
def operator(cluster: ClusterInfo, scope: Scope, tmp_path: Path) -> Iterator[OperatorProcess]:
    op = OperatorProcess(
        cluster.kubeconfig, tmp_path / "operator.log", resync_seconds=2, namespaces=(scope.pattern,)
    )
    op.start()
    op.wait_started()
    yield op
    op.stop()


def test_gpu_nodes_joining_and_leaving_trigger_a_replan(
    kube: Kube, operator: OperatorProcess, namespace: str, tmp_path: Path
) -> None:
    pools_file = tmp_path / "b200.yaml"
    pools_file.write_text(yaml.safe_dump(B200_POOLS))
    nodes = render_nodes(load_pools(pools_file))
    node_names = [n["metadata"]["name"] for n in nodes]
    kube.apply(dsd("on-b200", DISTILL_7B, products=["B200"]), namespace)

    def planned_status(value: str) -> Any:
        def probe() -> dict[str, Any] | None:
            o = get_dsd(kube, namespace, "on-b200")
            c = find_condition(o, "Planned")
            return o if c and c["status"] == value else None

        return probe

    failed = wait_for("Planned=False", planned_status("False"), 60)
    assert "B200" in condition(failed, "Planned")["message"]
    try:
        kube(
            "create",
            "-f",
            "-",
            stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": nodes}),
        )
        ready = wait_current(kube, namespace, "on-b200", 120)
        assert "B200" in ready["status"]["plan"]["gpuProduct"]
        placed = pods_by_pool(kube, namespace, ready["status"]["selector"])
        assert set(placed.values()) == {"b200"}, placed
        events = kube.json(
            "get", "events", "-n", namespace, "--field-selector", "involvedObject.name=on-b200"
        )["items"]
        assert {"PlanFailed", "Planned"} <= {e["reason"] for e in events}
    finally:
        kube("delete", "node", *node_names, "--wait=false", check=False)
    gone = wait_for("re-plan after the nodes left", planned_status("False"), 60)
    assert is_true(gone, "Degraded")
    assert condition(gone, "Degraded")["reason"] == "PlanFailed"
    # what served is kept; nothing was deleted by the failed re-plan
    assert any(c["kind"] == "Deployment" for c in children(kube, namespace, "on-b200"))
    time.sleep(1)
