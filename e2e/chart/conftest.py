"""Fixtures of the chart tests: ``helm_cli`` (the pinned helm bound to the cluster)."""

from __future__ import annotations

from pathlib import Path

import pytest

from e2e.chart.helm import Helm


@pytest.fixture(scope="session")
def helm_cli(helm: Path, kubeconfig: Path) -> Helm:
    return Helm(helm, kubeconfig)
