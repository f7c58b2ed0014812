"""Session fixtures for the model tests: tiny checkpoints made once per session."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from deepseek_runtime.checkpoint.make_tiny import make_tiny_checkpoint


@pytest.fixture(scope="session")
def ckpt_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield tmp_path_factory.mktemp("ckpts")


@pytest.fixture(scope="session")
def make_ckpt(ckpt_root: Path) -> Callable[..., Path]:
    cache: dict[str, Path] = {}

    def make(name: str, arch: str = "v3", **kwargs: Any) -> Path:
        if name not in cache:
            cache[name] = make_tiny_checkpoint(ckpt_root / name, arch, **kwargs)
        return cache[name]

    return make
