"""Fixtures for the server tests: a tiny checkpoint and real server processes on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from server_harness import ServerProcess

from deepseek_runtime.checkpoint.make_tiny import make_tiny_checkpoint


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ckpt") / "tiny-v3"
    return Path(make_tiny_checkpoint(out, arch="v3", seed=0))


@pytest.fixture(scope="module")
def server(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One plain server (with the gRPC face) shared by a test module."""
    proc = ServerProcess(tiny_model, args=["--max-n", "8"], grpc=True)
    proc.start(tmp_path_factory.mktemp("logs"))
    yield proc
    proc.stop()
