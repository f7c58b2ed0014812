"""kill -9 one worker of a ``--tensor-parallel-size 2`` CPU server under load.

Six clients keep the group busy; SIGKILL to the worker rank must take the group down
with a non-zero exit within seconds, no request may hang, and every request in flight
at the kill ends with an error the client can read (an error event or
``finish_reason: error`` in its answer, or an error status), not a reset.
``tests/runtime/server/test_tensor_parallel_serve.py`` covers one idle stream; this is
the loaded case.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from e2e.reliability.process_faults import (
    COMPLETED,
    ERROR_ANSWER,
    ERROR_IN_ANSWER,
    run_worker_death,
)
from e2e.reliability.server import RuntimeServer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

ARGS = ["--tensor-parallel-size", "2", "--device", "cpu", "--dtype", "float32"]
ARGS += ["--num-blocks", "256"]
EXIT_LIMIT_S = 10


def test_killed_worker_under_load_fails_every_request_cleanly(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    server = RuntimeServer(tiny_checkpoint, args=ARGS).start(tmp_path)
    try:
        report = asyncio.run(run_worker_death(server, clients=6, warm_seconds=3))
        print(json.dumps(report.to_json(), indent=1))
        assert report.exit_code is not None and report.exit_code != 0, server.log()[-3000:]
        assert report.exit_seconds is not None and report.exit_seconds < EXIT_LIMIT_S
        assert report.hung == 0
        assert sum(report.in_flight_at_kill.values()) > 0
        assert set(report.in_flight_at_kill) <= {COMPLETED, ERROR_IN_ANSWER, ERROR_ANSWER}, (
            report.in_flight_at_kill
        )
        assert report.in_flight_at_kill.get(ERROR_IN_ANSWER, 0) > 0
        assert "rank" in server.log() and "exited" in server.log()
    finally:
        server.stop()
