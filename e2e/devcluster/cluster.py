"""Brings the local control plane up and down: kwokctl (binary runtime) + pools + CRDs.

``up`` runs ``kwokctl create cluster --runtime binary`` with the locally built binaries,
every component bound to 127.0.0.1, installs the third-party CRDs, creates the simulated
GPU nodes from ``e2e/pools.yaml`` and waits until nodes are Ready and the default service
account exists. ``ensure_cluster`` reuses a healthy cluster (reconciling its nodes) and
recreates a broken one without leftovers. Called by ``python -m e2e.devcluster`` and by
the pytest fixtures in ``e2e/conftest.py``.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml

from e2e.devcluster.content import install_crds, reconcile_nodes, wait_ready
from e2e.devcluster.kube import KubectlError, kubectl
from e2e.devcluster.progress import progress
from e2e.devcluster.toolchain import Toolchain, cache_dir, ensure_built, toolchain

DEFAULT_NAME = "deepseek-dev"


@dataclass(frozen=True)
class ClusterInfo:
    """What a test or the demo needs to talk to the local cluster."""

    kubeconfig: Path
    kubectl: Path
    name: str
    helm: Path
    workdir: Path


def cluster_name() -> str:
    """Cluster name: ``$DSK_CLUSTER_NAME`` or ``deepseek-dev``."""
    return os.environ.get("DSK_CLUSTER_NAME", DEFAULT_NAME)


def kwok_workdir() -> Path:
    """kwokctl's work dir (``KWOK_WORKDIR``), kept under the project cache."""
    return cache_dir() / "kwok"


@contextmanager
def _cluster_lock(name: str) -> Iterator[None]:
    """Serialize up/down of one cluster across processes (parallel test runs share it)."""
    lock_path = kwok_workdir() / f"{name}.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def cluster_info(name: str | None = None, tc: Toolchain | None = None) -> ClusterInfo:
    """Paths for cluster ``name`` (whether or not it is running)."""
    name = name or cluster_name()
    tc = tc or toolchain()
    return ClusterInfo(
        kubeconfig=cache_dir() / "kubeconfig" / f"{name}.yaml",
        kubectl=tc.path("kubectl"),
        name=name,
        helm=tc.path("helm"),
        workdir=kwok_workdir() / "clusters" / name,
    )


def _kwokctl(tc: Toolchain, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, KWOK_WORKDIR=str(kwok_workdir()))
    return subprocess.run(
        [str(tc.path("kwokctl")), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _config_path(name: str) -> Path:
    return kwok_workdir() / f"{name}.kwokctl.yaml"


def _kwokctl_config(tc: Toolchain) -> str:
    options = {
        "runtime": "binary",
        "bindAddress": "127.0.0.1",
        "kubeVersion": tc.versions["K8S_VERSION"],
        "quietPull": True,
        "etcdBinary": str(tc.path("etcd")),
        "kubeApiserverBinary": str(tc.path("kube-apiserver")),
        "kubeControllerManagerBinary": str(tc.path("kube-controller-manager")),
        "kubeSchedulerBinary": str(tc.path("kube-scheduler")),
        "kwokControllerBinary": str(tc.path("kwok")),
        "kubectlBinary": str(tc.path("kubectl")),
    }
    doc = {
        "apiVersion": "config.kwok.x-k8s.io/v1alpha1",
        "kind": "KwokctlConfiguration",
        "options": options,
    }
    return yaml.safe_dump(doc, sort_keys=False)


def is_healthy(info: ClusterInfo) -> bool:
    """True when the kubeconfig exists and the apiserver answers ``/readyz``."""
    if not info.kubeconfig.is_file() or not info.kubectl.is_file():
        return False
    try:
        proc = kubectl(
            info.kubectl,
            info.kubeconfig,
            "get",
            "--raw",
            "/readyz",
            "--request-timeout=5s",
            check=False,
            timeout=15,
        )
    except subprocess.TimeoutExpired:
        return False
    return proc.returncode == 0 and proc.stdout.strip() == "ok"


def down(name: str | None = None) -> bool:
    """Delete the cluster and its files; True if anything was there to delete."""
    tc = toolchain()
    info = cluster_info(name, tc)
    with _cluster_lock(info.name):
        return _down(tc, info)


def _down(tc: Toolchain, info: ClusterInfo) -> bool:
    existed = info.workdir.exists() or info.kubeconfig.exists()
    if info.workdir.exists() and tc.path("kwokctl").is_file():
        progress(f"deleting cluster {info.name}")
        proc = _kwokctl(
            tc, "delete", "cluster", "--name", info.name, "--kubeconfig", str(info.kubeconfig)
        )
        if proc.returncode != 0:
            progress(f"kwokctl delete reported: {proc.stderr.strip()[-500:]}")
    shutil.rmtree(info.workdir, ignore_errors=True)
    info.kubeconfig.unlink(missing_ok=True)
    _config_path(info.name).unlink(missing_ok=True)
    return existed


def _create(tc: Toolchain, info: ClusterInfo) -> None:
    info.kubeconfig.parent.mkdir(parents=True, exist_ok=True)
    config = _config_path(info.name)
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(_kwokctl_config(tc))
    progress(f"creating cluster {info.name} (kwokctl --runtime binary, 127.0.0.1)")
    proc = _kwokctl(
        tc,
        "create",
        "cluster",
        "--name",
        info.name,
        "--config",
        str(config),
        "--kubeconfig",
        str(info.kubeconfig),
        "--wait",
        "3m",
        "--timeout",
        "5m",
        timeout=400,
    )
    if proc.returncode != 0:
        logs = "".join(
            f"\n--- {log.name} (tail) ---\n{log.read_text(errors='replace')[-1500:]}"
            for log in sorted((info.workdir / "logs").glob("*.log"))
        )
        raise RuntimeError(f"kwokctl create cluster failed:\n{proc.stderr[-4000:]}{logs}")


def ensure_cluster(
    pools_file: Path | None = None,
    scale: int = 1,
    name: str | None = None,
    recreate: bool = False,
) -> ClusterInfo:
    """Return a ready cluster: reuse a healthy one (reconciling nodes/CRDs) or (re)create it.

    Builds the toolchain first if a binary is missing. ``scale`` multiplies every pool's count.
    """
    if scale < 1:
        raise ValueError(f"scale must be >= 1, got {scale}")
    tc = ensure_built()
    info = cluster_info(name, tc)
    with _cluster_lock(info.name):
        return _ensure(tc, info, pools_file, scale, recreate)


def _ensure(
    tc: Toolchain, info: ClusterInfo, pools_file: Path | None, scale: int, recreate: bool
) -> ClusterInfo:
    if recreate or not is_healthy(info):
        if info.workdir.exists() or info.kubeconfig.exists():
            progress(f"cluster {info.name} is not healthy: recreating it")
        _down(tc, info)
        _create(tc, info)
    else:
        progress(f"reusing healthy cluster {info.name}")
    try:
        install_crds(info.kubectl, info.kubeconfig)
        count = reconcile_nodes(info.kubectl, info.kubeconfig, pools_file, scale)
        wait_ready(info.kubectl, info.kubeconfig, count)
    except (KubectlError, TimeoutError) as exc:
        raise RuntimeError(f"cluster {info.name} did not become ready: {exc}") from exc
    progress(f"cluster {info.name} ready; KUBECONFIG={info.kubeconfig}")
    return info
