"""Smoke e2e: the built tools report the versions pinned in e2e/toolchain/versions.env."""

from __future__ import annotations

import json
import subprocess

import pytest

from e2e.conftest import Kubectl
from e2e.devcluster import ClusterInfo, toolchain

pytestmark = pytest.mark.e2e


def _run(*cmd: str) -> str:
    return subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=60).stdout


def test_kubectl_client_and_server_versions(cluster: ClusterInfo, kubectl: Kubectl) -> None:
    want = toolchain().versions["K8S_VERSION"]
    client = json.loads(_run(str(cluster.kubectl), "version", "--client", "-o", "json"))
    assert client["clientVersion"]["gitVersion"] == want
    both = json.loads(kubectl("version", "-o", "json").stdout)
    assert both["serverVersion"]["gitVersion"] == want


def test_helm_version(cluster: ClusterInfo) -> None:
    want = toolchain().versions["HELM_VERSION"]
    assert _run(str(cluster.helm), "version", "--short").strip().startswith(want)
    assert f'Version:"{want}"' in _run(str(cluster.helm), "version")


@pytest.mark.parametrize(
    ("binary", "key"),
    [
        ("kube-apiserver", "K8S_VERSION"),
        ("kube-controller-manager", "K8S_VERSION"),
        ("kube-scheduler", "K8S_VERSION"),
        ("etcd", "ETCD_VERSION"),
        ("kwokctl", "KWOK_VERSION"),
        ("kwok", "KWOK_VERSION"),
    ],
)
def test_component_versions(binary: str, key: str) -> None:
    tc = toolchain()
    out = _run(str(tc.path(binary)), "--version")
    assert tc.versions[key].lstrip("v") in out
