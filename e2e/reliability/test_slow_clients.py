"""Slow clients are cut off (408/431/413 or an abort) while other clients keep being served.

One real server with short limits; every attack of ``slow_clients.KINDS`` at once, with
victims sending small completions throughout. ``bench/reliability.py`` runs the same
suite with more attackers and the default limits.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from e2e.reliability.server import RuntimeServer
from e2e.reliability.slow_clients import KINDS, run_slow_clients

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

LIMITS = ["--header-timeout", "1", "--body-timeout", "2", "--send-timeout", "1"]
EXPECTED_STATUS = {
    "slowloris": 408,
    "idle": 408,
    "huge_headers": 431,
    "big_body": 413,
    "chunked_body": 413,
    "trickled_body": 408,
}


def test_every_slow_client_is_cut_and_victims_are_served(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    server = RuntimeServer(tiny_checkpoint, args=LIMITS).start(tmp_path)
    try:
        report = asyncio.run(run_slow_clients(server, per_kind=1, deadline_s=12, drip=0.3))
        print(json.dumps(report.to_json(), indent=1))
        assert dict(report.not_cut) == {}, report.to_json()
        assert dict(report.cut) == {k: 1 for k in KINDS}
        for kind, status in EXPECTED_STATUS.items():
            assert report.statuses[f"{kind}:{status}"] == 1, report.statuses
        # the victims were served throughout, and only with successes
        assert set(report.attack.statuses) == {"200"}, report.attack.statuses
        assert len(report.attack.latencies_s) >= 10
        assert report.leaked_blocks == 0 and report.running_after == 0
        assert server.alive()
    finally:
        assert server.stop() == 0
