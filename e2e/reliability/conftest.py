"""Fixtures of the reliability suites: a tiny checkpoint (runtime suites).

The operator suites here use ``e2e/dsd``-style fixtures defined in their own modules
(``kube`` with the CRDs installed, a namespace scope per module) on the session
``cluster`` of ``e2e/conftest.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from deepseek_runtime.checkpoint.make_tiny import make_tiny_checkpoint


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("reliability-ckpt") / "tiny-v3"
    return Path(make_tiny_checkpoint(out, arch="v3", seed=0))
