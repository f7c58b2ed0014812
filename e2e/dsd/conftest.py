"""Fixtures shared by the DeepSeekDeployment e2e tests (the operator against the local cluster).

Each test module gets its own operator scope: a namespace pattern (``op-<id>-*``) that only
that module's operator watches, so modules (and developers sharing one cluster) never see
each other's objects.

- ``kube`` (module): a kubectl wrapper with the DSD CRD and kopf's peering CRDs installed.
- ``scope`` (module): the module's namespace pattern and factory.
- ``namespace`` (function): a fresh namespace inside the scope, deleted afterwards
  (overrides the cluster-wide ``namespace`` fixture of ``e2e/conftest.py``).
- ``operator`` (module): ``deepseek-operator run`` as a real subprocess watching the scope,
  resyncing every 3 s. A module may override it (e.g. per test, to kill and restart it).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from e2e.devcluster import ClusterInfo
from e2e.operator_harness import ROOT, Kube, OperatorProcess, Scope, install_crds


@pytest.fixture(scope="module")
def kube(cluster: ClusterInfo) -> Kube:
    k = Kube(cluster.kubectl, cluster.kubeconfig)
    install_crds(k)
    k(
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager=e2e",
        "-f",
        str(ROOT / "manifests/base/kopf-peering-crds.yaml"),
    )
    k("wait", "--for=condition=Established", "crd/kopfpeerings.kopf.dev", "--timeout=60s")
    return k


@pytest.fixture(scope="module")
def scope(kube: Kube) -> Scope:
    return Scope(kube)


@pytest.fixture
def namespace(scope: Scope) -> Iterator[str]:
    """A fresh namespace inside this module's operator scope."""
    name = scope.new_namespace()
    yield name
    scope.delete_namespace(name)


@pytest.fixture(scope="module")
def operator(
    cluster: ClusterInfo, scope: Scope, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    op = OperatorProcess(
        cluster.kubeconfig, log, resync_seconds=3, namespaces=(scope.pattern,)
    ).start()
    op.wait_started()
    yield op
    op.stop()
    print(f"operator log: {log}")
