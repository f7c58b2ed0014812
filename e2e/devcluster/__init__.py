"""The local Kubernetes control plane for tests and the demo (kwok + real k8s binaries).

Public API (used by ``e2e/conftest.py``, other e2e tests, benchmarks and the demo):

- :func:`ensure_cluster` ``(pools_file=None, scale=1, name=None, recreate=False) -> ClusterInfo``
  reuses a healthy cluster or (re)creates it; builds the toolchain if needed.
- :class:`ClusterInfo` ``(kubeconfig, kubectl, name, helm, workdir)``.
- :func:`down` ``(name=None) -> bool`` deletes the cluster and its files.
- :func:`is_healthy`, :func:`cluster_info`, :func:`load_pools`, :func:`render_nodes`,
  :func:`toolchain` (paths of the pinned binaries).

CLI: ``python -m e2e.devcluster up|down|status|nodes [--pools FILE] [--scale N]``.
"""

from e2e.devcluster.cluster import ClusterInfo, cluster_info, down, ensure_cluster, is_healthy
from e2e.devcluster.pools import PoolSet, load_pools, render_nodes
from e2e.devcluster.toolchain import Toolchain, toolchain

__all__ = [
    "ClusterInfo",
    "PoolSet",
    "Toolchain",
    "cluster_info",
    "down",
    "ensure_cluster",
    "is_healthy",
    "load_pools",
    "render_nodes",
    "toolchain",
]
