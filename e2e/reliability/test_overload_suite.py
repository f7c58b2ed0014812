"""Ten times the capacity: only 200, 429 or 503 with Retry-After, nothing leaked, RSS bounded.

A real server with a small engine (2 running + 2 waiting) and a small HTTP admission
bound (12 requests in flight), so both refusals happen: the engine's 429 and the
admission middleware's 503. ``bench/reliability.py`` runs it for 60 s.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from e2e.reliability.overload import run_overload
from e2e.reliability.server import RuntimeServer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

ARGS = ["--max-num-seqs", "2", "--max-waiting", "2", "--max-inflight-requests", "12"]
RSS_GROWTH_LIMIT = 512 << 20


def test_ten_times_capacity_gives_only_clean_refusals(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    server = RuntimeServer(tiny_checkpoint, args=ARGS).start(tmp_path)
    try:
        report = asyncio.run(run_overload(server, capacity=4, factor=10, seconds=8))
        print(json.dumps(report.to_json(), indent=1))
        assert report.unexpected == {}, report.statuses
        assert report.server_errors == 0
        assert report.refusals_without_retry_after == 0
        assert report.statuses["200"] > 0
        assert report.statuses["429"] > 0 and report.statuses["503"] > 0, report.statuses
        assert report.leaked_blocks == 0
        assert report.running_after == 0 and report.waiting_after == 0
        assert report.rss_peak - report.rss_start < RSS_GROWTH_LIMIT
        text = server.metrics()
        assert 'dsr:requests_refused_total{reason="inflight_limit"}' in text
        assert server.alive()
    finally:
        assert server.stop() == 0
