"""Joining and leaving a world fails loudly and quickly instead of hanging."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
import torch.distributed as dist

from deepseek_runtime.parallel import ParallelConfig, init_process_groups

Run = Callable[[str, int], list[dict[str, Any]]]


@pytest.mark.unit
@pytest.mark.timeout(60)
def test_missing_peer_is_an_error_within_the_timeout() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    start = time.monotonic()
    with pytest.raises(RuntimeError, match="1/2 clients joined"):
        init_process_groups(
            ParallelConfig(tensor=2, world_size=2, rank=0),
            master_port=port,
            timeout=timedelta(seconds=2),
        )
    assert time.monotonic() - start < 20
    assert not dist.is_initialized()


@pytest.mark.unit
def test_one_process_needs_no_world() -> None:
    ctx = init_process_groups(ParallelConfig())
    assert not dist.is_initialized()
    assert ctx.tp.size == ctx.pp.size == ctx.ep.size == 1


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_collective_with_a_departed_peer_raises(run_suite: Run) -> None:
    first, second = run_suite("dead_peer", 2)
    assert second == {"left": True}
    assert first["raised"] is not None, "the all-reduce returned without its peer"
    assert first["seconds"] < 30
