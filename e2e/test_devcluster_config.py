"""Unit tests of the kwokctl configuration and toolchain paths (no cluster, no build)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from e2e.devcluster.cluster import _kwokctl_config
from e2e.devcluster.crds import SOURCES
from e2e.devcluster.toolchain import Toolchain, read_versions

pytestmark = pytest.mark.unit


def _toolchain(tmp_path: Path) -> Toolchain:
    return Toolchain(root=tmp_path / "bin", versions=read_versions())


def test_binary_paths_are_keyed_by_version(tmp_path: Path) -> None:
    tc = _toolchain(tmp_path)
    k8s = tc.versions["K8S_VERSION"]
    assert tc.path("kubectl") == tmp_path / "bin" / f"kubectl-{k8s}" / "kubectl"
    assert tc.path("kwokctl").parent == tc.path("kwok").parent
    assert tc.path("etcd").parent.name == f"etcd-{tc.versions['ETCD_VERSION']}"
    with pytest.raises(ValueError, match="unknown binary"):
        tc.path("docker")


def test_kwokctl_config_is_offline_and_loopback(tmp_path: Path) -> None:
    tc = _toolchain(tmp_path)
    doc = yaml.safe_load(_kwokctl_config(tc))
    options = doc["options"]
    assert doc["kind"] == "KwokctlConfiguration"
    assert options["runtime"] == "binary"
    assert options["bindAddress"] == "127.0.0.1"
    assert options["kubeVersion"] == tc.versions["K8S_VERSION"]
    binaries = {k: v for k, v in options.items() if k.endswith("Binary")}
    assert len(binaries) == 6
    assert all(v.startswith(str(tmp_path)) for v in binaries.values())


def test_every_crd_source_is_pinned() -> None:
    versions = read_versions()
    for source in SOURCES:
        assert versions[source.version_key].startswith("v"), source.module
        assert source.files and source.crd_names
