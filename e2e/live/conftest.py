"""Fixtures of the live data-plane tests (``e2e/live``).

Reuses the operator fixtures of ``e2e/dsd`` (``kube``, ``scope``, ``namespace``,
``operator``: a real operator subprocess watching this module's namespaces) and adds:

- ``tiny_model`` (session): the cached tiny checkpoint every runtime serves.
- ``live`` (module): a started :class:`e2e.live.harness.LiveDataPlane` with two live nodes.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e.devcluster import ClusterInfo
from e2e.devcluster.toolchain import cache_dir
from e2e.dsd.conftest import kube, namespace, operator, scope  # noqa: F401 - fixtures
from e2e.live.harness import LiveDataPlane, tiny_checkpoint


@pytest.fixture(scope="session")
def tiny_model() -> Path:
    return tiny_checkpoint(cache_dir() / "live")


@pytest.fixture(scope="module")
def live(
    cluster: ClusterInfo,
    tiny_model: Path,
    prometheus_bin: Path,
) -> Iterator[LiveDataPlane]:
    # Not tmp_path_factory: concurrent pytest sessions rotate each other's basetemp away.
    workdir = Path(tempfile.mkdtemp(prefix="dsk-live-"))
    with LiveDataPlane(cluster.kubeconfig, workdir, tiny_model, nodes=2) as plane:
        yield plane
    print(f"live data plane files: {workdir}")
