"""Unit tests of the pool definitions, Node rendering and the per-pool summary (no cluster)."""

from __future__ import annotations

from pathlib import Path

import pytest

from e2e.devcluster.pools import load_pools, render_nodes
from e2e.devcluster.report import format_table, summarize_nodes
from e2e.devcluster.toolchain import read_versions

pytestmark = pytest.mark.unit


def test_default_pools_meet_the_minimum_inventory() -> None:
    pools = load_pools()
    want = {
        "NVIDIA-H100-80GB-HBM3": 8,
        "NVIDIA-H200": 8,
        "NVIDIA-A100-SXM4-80GB": 8,
        "NVIDIA-L40S": 4,
    }
    for product, gpus in want.items():
        matching = [p for p in pools.pools if p.gpu and p.gpu.product == product]
        assert len(matching) == 1, product
        assert matching[0].gpu is not None and matching[0].gpu.count == gpus
        assert matching[0].count >= 4
    assert any(p.gpu is None for p in pools.pools)


def test_gpu_node_has_feature_discovery_labels_taint_and_kwok_markers() -> None:
    nodes = render_nodes(load_pools())
    h100 = next(n for n in nodes if n["metadata"]["name"] == "gpu-h100-0")
    labels = h100["metadata"]["labels"]
    assert labels["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"
    assert labels["nvidia.com/gpu.count"] == "8"
    assert labels["nvidia.com/gpu.memory"] == "81559"
    assert labels["nvidia.com/gpu.family"] == "hopper"
    assert labels["nvidia.com/gpu.present"] == "true"
    assert labels["topology.kubernetes.io/zone"] == "local-1a"
    assert labels["node.kubernetes.io/instance-type"] == "p5.48xlarge"
    assert labels["type"] == "kwok"
    assert h100["metadata"]["annotations"]["kwok.x-k8s.io/node"] == "fake"
    assert h100["spec"]["taints"] == [
        {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}
    ]
    assert h100["status"]["allocatable"]["nvidia.com/gpu"] == "8"
    cpu = next(n for n in nodes if n["metadata"]["name"] == "cpu-0")
    assert "nvidia.com/gpu" not in cpu["status"]["allocatable"]
    assert cpu["spec"] == {}


def test_scale_multiplies_every_pool_and_names_are_unique() -> None:
    pools = load_pools()
    base = sum(p.count for p in pools.pools)
    nodes = render_nodes(pools, scale=20)
    assert len(nodes) == base * 20
    assert len({n["metadata"]["name"] for n in nodes}) == len(nodes)
    with pytest.raises(ValueError, match="scale"):
        render_nodes(pools, scale=0)


def test_duplicate_prefix_is_rejected(tmp_path: Path) -> None:
    pool = (
        "  - {name: %s, namePrefix: same, count: 1, instanceType: x, zones: [z],"
        " cpu: '1', memory: 1Gi}\n"
    )
    path = tmp_path / "pools.yaml"
    path.write_text("pools:\n" + pool % "a" + pool % "b")
    with pytest.raises(ValueError, match="unique"):
        load_pools(path)


def test_summary_groups_nodes_by_pool() -> None:
    nodes = render_nodes(load_pools())
    for n in nodes[:3]:
        n["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
    rows = {r.pool: r for r in summarize_nodes(nodes)}
    assert rows["h100"].nodes == 4
    assert rows["h100"].ready == 3
    assert rows["h100"].allocatable_gpus == 32
    assert rows["l40s"].gpus_per_node == 4
    assert rows["cpu"].product == "(cpu only)"
    table = format_table(list(rows.values()))
    assert table.splitlines()[0].startswith("POOL")
    assert "TOTAL" in table.splitlines()[-1]


def test_versions_file_pins_every_tool() -> None:
    versions = read_versions()
    for key in ("K8S_VERSION", "ETCD_VERSION", "KWOK_VERSION", "HELM_VERSION"):
        assert versions[key].startswith("v")
    assert versions["ETCD_VERSION"].startswith("v3.5.")
