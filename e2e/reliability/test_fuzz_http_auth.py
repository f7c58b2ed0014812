"""Schemathesis over every operation (OpenAI, tokenize, KServe v2, probes) with API keys on.

No input gives a 5xx, and every API operation refuses a request without the key. The
plain-server run without auth is ``tests/runtime/server/test_schemathesis.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from e2e.reliability.http_fuzz import run_http_fuzz
from e2e.reliability.server import RuntimeServer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

KEY = "sk-fuzz-0123456789"


def test_schemathesis_with_api_keys_finds_no_5xx(tiny_checkpoint: Path, tmp_path: Path) -> None:
    args = ["--api-keys", KEY, "--max-model-len", "64", "--max-n", "4"]
    server = RuntimeServer(tiny_checkpoint, args=args, headers={"Authorization": f"Bearer {KEY}"})
    server.start(tmp_path)
    try:
        report = run_http_fuzz(server, KEY, tmp_path, examples=15)
        print(report.output_tail[-3000:])
        print(json.dumps(report.to_json()))
        assert report.returncode == 0, report.output_tail
        assert report.passed > 0 and report.failed == 0
        assert report.server_alive, "the server crashed"
    finally:
        assert server.stop() == 0
