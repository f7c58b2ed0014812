"""Shared pytest fixtures for tests against the local control plane (``e2e/``).

Session fixtures (stable names; other e2e tests depend on them):

- ``cluster`` -> :class:`e2e.devcluster.ClusterInfo` ``(kubeconfig, kubectl, name, helm,
  workdir)``: brings the kwok cluster up once per session, or reuses one already up. At the
  end it is torn down only if this session created it and ``DSK_KEEP_CLUSTER`` is not ``1``.
- ``kubeconfig`` -> ``Path`` of the cluster's kubeconfig.
- ``kubectl`` -> ``Kubectl``: ``kubectl(*args, stdin=None, check=True, timeout=120)`` runs
  the pinned kubectl against the cluster and returns ``subprocess.CompletedProcess[str]``
  (raises ``e2e.devcluster.kube.KubectlError`` when ``check`` and it fails);
  ``kubectl.json(*args)`` adds ``-o json`` and decodes it.
- ``helm`` -> ``Path`` of the pinned helm binary.
- ``prometheus_bin`` / ``promtool_bin`` -> ``Path`` of Debian's ``/usr/bin/prometheus`` and
  ``/usr/bin/promtool`` (``make system-deps`` installs them).

Function fixture:

- ``namespace`` -> ``str``: a fresh namespace for one test, deleted afterwards.

Environment: ``DSK_KEEP_CLUSTER=1`` keeps a cluster this session created;
``DSK_CLUSTER_NAME`` picks the cluster; ``DSK_CACHE`` moves the cache.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from e2e.devcluster import ClusterInfo, cluster_info, down, ensure_cluster, is_healthy
from e2e.devcluster.kube import kubectl as run_kubectl


class Kubectl:
    """Callable that runs the pinned kubectl against one kubeconfig."""

    def __init__(self, binary: Path, kubeconfig: Path) -> None:
        self.binary = binary
        self.kubeconfig = kubeconfig

    def __call__(
        self, *args: str, stdin: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        return run_kubectl(
            self.binary, self.kubeconfig, *args, stdin=stdin, check=check, timeout=timeout
        )

    def json(self, *args: str) -> Any:
        """Run a read command with ``-o json`` and decode its output."""
        return json.loads(self(*args, "-o", "json").stdout)


@pytest.fixture(scope="session")
def cluster() -> Iterator[ClusterInfo]:
    """The local cluster, up for the whole session (see module docstring)."""
    started = not is_healthy(cluster_info())
    info = ensure_cluster()
    yield info
    if started and os.environ.get("DSK_KEEP_CLUSTER") != "1":
        down(info.name)


@pytest.fixture(scope="session")
def kubeconfig(cluster: ClusterInfo) -> Path:
    return cluster.kubeconfig


@pytest.fixture(scope="session")
def kubectl(cluster: ClusterInfo) -> Kubectl:
    return Kubectl(cluster.kubectl, cluster.kubeconfig)


@pytest.fixture(scope="session")
def helm(cluster: ClusterInfo) -> Path:
    return cluster.helm


def _system_binary(name: str) -> Path:
    path = Path("/usr/bin") / name
    if not path.is_file():
        pytest.fail(f"{path} is missing: run `make system-deps` (Debian's prometheus package)")
    return path


@pytest.fixture(scope="session")
def prometheus_bin() -> Path:
    return _system_binary("prometheus")


@pytest.fixture(scope="session")
def promtool_bin() -> Path:
    return _system_binary("promtool")


@pytest.fixture
def namespace(kubectl: Kubectl) -> Iterator[str]:
    """A fresh namespace, deleted (without waiting) after the test."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    kubectl("create", "namespace", name)
    yield name
    kubectl("delete", "namespace", name, "--wait=false", check=False)
