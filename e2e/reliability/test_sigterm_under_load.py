"""SIGTERM under load: every request sent before the signal completes; the rest are refused.

Eight clients keep a real server busy (streamed and whole completions); SIGTERM starts
the drain. Nothing sent before the signal may be lost, every later answer is a 503 with
Retry-After (or the port is closed once the server is gone), and the exit code is 0.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from e2e.reliability.process_faults import (
    CONNECT_REFUSED,
    ERROR_ANSWER,
    RESET_BEFORE_ANSWER,
    run_sigterm_under_load,
)
from e2e.reliability.server import RuntimeServer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def test_sigterm_under_load_loses_nothing(tiny_checkpoint: Path, tmp_path: Path) -> None:
    server = RuntimeServer(tiny_checkpoint, args=["--drain-timeout", "60"]).start(tmp_path)
    try:
        report = asyncio.run(run_sigterm_under_load(server, clients=8, warm_seconds=3))
        print(json.dumps(report.to_json(), indent=1))
        assert report.sent_before_signal > 0
        assert report.lost == 0, report.to_json()
        assert report.exit_code == 0
        assert report.refusals_without_retry_after == 0
        assert set(report.after_signal) <= {ERROR_ANSWER, CONNECT_REFUSED, RESET_BEFORE_ANSWER}
    finally:
        server.stop()
