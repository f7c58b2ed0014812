"""Ten times the capacity: only 200, 429 or 503 with Retry-After, nothing leaked, RSS bounded.

A real server with a small engine (2 running + 2 waiting) and a small HTTP admission
bound (12 requests in flight). Under the load the engine's quick 429s usually keep the
HTTP layer under its bound, so which refusal a run sees depends on timing; the second
test holds 12 requests in flight (bodies not yet sent: the bound counts from the
headers) and shows the admission middleware's 503 deterministically.
``bench/reliability.py`` runs the load for 60 s.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
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
        assert report.statuses["429"] + report.statuses["503"] > 0, report.statuses
        assert report.leaked_blocks == 0
        assert report.running_after == 0 and report.waiting_after == 0
        assert report.rss_peak - report.rss_start < RSS_GROWTH_LIMIT
        assert server.alive()
    finally:
        assert server.stop() == 0


async def _hold_requests(port: int, count: int) -> list[asyncio.StreamWriter]:
    """``count`` POSTs whose headers are sent and whose bodies are not (yet)."""
    writers = []
    for _ in range(count):
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 64\r\n\r\n{"
        )
        await writer.drain()
        writers.append(writer)
    return writers


def test_beyond_the_inflight_bound_is_a_503_with_retry_after(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    server = RuntimeServer(tiny_checkpoint, args=ARGS).start(tmp_path)

    async def scenario() -> tuple[httpx.Response, httpx.Response]:
        held = await _hold_requests(server.port, 12)
        try:
            await asyncio.sleep(0.5)  # the server has admitted all twelve
            body = {"model": server.model, "prompt": "hi", "max_tokens": 1}
            async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
                refused = await client.post("/v1/completions", json=body)
                for writer in held:
                    writer.close()
                await asyncio.sleep(0.5)
                served = await client.post("/v1/completions", json=body)
        finally:
            for writer in held:
                writer.close()
        return refused, served

    try:
        refused, served = asyncio.run(scenario())
        assert refused.status_code == 503, refused.text
        assert int(refused.headers["retry-after"]) >= 1
        assert refused.headers["connection"] == "close"  # its unread body ends the connection
        assert "error" in refused.json()
        assert served.status_code == 200, served.text  # the bound frees with its requests
        text = server.metrics()
        assert 'dsr:requests_refused_total{reason="inflight_limit"} 1.0' in text
    finally:
        assert server.stop() == 0
