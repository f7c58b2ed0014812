"""Overload (429), client disconnect mid-stream (blocks freed) and SIGTERM drain, for real."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from server_harness import REPO, ServerProcess, free_port, metric_value

pytestmark = [pytest.mark.slow]


def _blocks(proc: ServerProcess) -> tuple[float, float, float]:
    text = proc.metrics()
    total = metric_value(text, "dsr:kv_cache_blocks_total")
    free = metric_value(text, "dsr:kv_cache_blocks_free")
    running = metric_value(text, "vllm:num_requests_running")
    assert total is not None and free is not None and running is not None
    return total, free, running


def _wait_idle(proc: ServerProcess, timeout: float = 20.0) -> tuple[float, float, float]:
    deadline = time.monotonic() + timeout
    while True:
        total, free, running = _blocks(proc)
        text = proc.metrics()
        waiting = metric_value(text, "vllm:num_requests_waiting")
        if (running == 0 and waiting == 0) or time.monotonic() > deadline:
            return total, free, running
        time.sleep(0.1)


def test_overload_gives_429_and_leaks_nothing(tiny_model: Path, tmp_path: Path) -> None:
    proc = ServerProcess(tiny_model, args=["--max-waiting", "2", "--max-num-seqs", "2"])
    proc.start(tmp_path)
    try:

        async def fire() -> list[int]:
            async with httpx.AsyncClient(base_url=proc.url, timeout=60) as c:

                async def one(i: int) -> int:
                    r = await c.post(
                        "/v1/completions",
                        json={
                            "model": "tiny-v3",
                            "prompt": f"load {i}",
                            "max_tokens": 24,
                            "ignore_eos": True,
                        },
                    )
                    if r.status_code == 429:
                        assert "retry-after" in r.headers
                    return r.status_code

                return list(await asyncio.gather(*(one(i) for i in range(24))))

        statuses = asyncio.run(fire())
        assert 429 in statuses and 200 in statuses
        assert set(statuses) <= {200, 429}
        total, free, running = _wait_idle(proc)
        assert running == 0
        # with prefix caching, freed blocks stay cached but are reusable: all count as free
        assert free == total
        assert httpx.get(proc.url + "/health").status_code == 200
    finally:
        assert proc.stop() == 0


def test_disconnect_mid_stream_aborts(server: ServerProcess) -> None:
    total_before, _, _ = _wait_idle(server)
    with (
        httpx.Client(timeout=30) as c,
        c.stream(
            "POST",
            server.url + "/v1/completions",
            json={
                "model": "tiny-v3",
                "prompt": "stream me",
                "max_tokens": 2000,
                "stream": True,
                "ignore_eos": True,
            },
        ) as r,
    ):
        assert r.status_code == 200
        lines = 0
        for line in r.iter_lines():
            if line.startswith("data: "):
                lines += 1
            if lines >= 3:
                break  # leave the stream: the connection closes
    deadline = time.monotonic() + 10
    while True:
        total, free, running = _blocks(server)
        if running == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert running == 0
    assert free == total_before == total
    text = server.metrics()
    assert (metric_value(text, "vllm:request_success_total", 'finished_reason="abort"') or 0) >= 1


def test_disconnect_while_waiting_for_a_whole_answer_aborts(server: ServerProcess) -> None:
    total_before, _, _ = _wait_idle(server)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            server.url + "/v1/completions",
            timeout=1.0,
            json={"model": "tiny-v3", "prompt": "long", "max_tokens": 2000, "ignore_eos": True},
        )
    deadline = time.monotonic() + 3  # 2000 tokens take far longer than this
    while True:
        total, free, running = _blocks(server)
        if running == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert running == 0 and free == total_before == total


def test_sigterm_drains_then_exits_zero(tiny_model: Path, tmp_path: Path) -> None:
    proc = ServerProcess(tiny_model, args=["--drain-timeout", "60"])
    proc.start(tmp_path)
    received: list[str] = []
    done = threading.Event()
    started = threading.Event()

    def stream() -> None:
        with (
            httpx.Client(timeout=60) as c,
            c.stream(
                "POST",
                proc.url + "/v1/completions",
                json={
                    "model": "tiny-v3",
                    "prompt": "drain",
                    "max_tokens": 300,
                    "stream": True,
                    "ignore_eos": True,
                },
            ) as r,
        ):
            for line in r.iter_lines():
                if line.startswith("data: "):
                    received.append(line[6:])
                    started.set()
        done.set()

    t = threading.Thread(target=stream)
    t.start()
    assert started.wait(30)
    proc.terminate()
    time.sleep(0.3)
    assert not done.is_set(), "the stream should still be running"
    r = httpx.get(proc.url + "/ready")
    assert r.status_code == 503 and r.json()["draining"] is True
    r = httpx.post(proc.url + "/v1/completions", json={"model": "tiny-v3", "prompt": "late"})
    assert r.status_code == 503 and "retry-after" in r.headers
    t.join(60)
    assert done.is_set()
    assert received[-1] == "[DONE]"
    finals = [json.loads(x)["choices"][0]["finish_reason"] for x in received[:-1]]
    assert finals[-1] == "length"
    assert proc.proc is not None
    assert proc.proc.wait(30) == 0


def test_ready_only_after_load_and_load_failure_exits_1(tiny_model: Path, tmp_path: Path) -> None:
    # a TCP listener that never speaks gRPC: loading (the triton backend's readiness check)
    # hangs until its 10 s timeout, then fails
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = free_port()
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "deepseek_runtime.cli",
                "serve",
                "--model",
                str(tiny_model),
                "--port",
                str(port),
                "--engine",
                "triton",
                "--triton-url",
                f"127.0.0.1:{silent.getsockname()[1]}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            cwd=REPO,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    if httpx.get(url + "/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            r = httpx.get(url + "/ready")
            assert r.status_code == 503 and r.json()["ready"] is False
            r = httpx.post(url + "/v1/completions", json={"model": "tiny-v3", "prompt": "x"})
            assert r.status_code == 503 and r.json()["error"]["code"] == "not_ready"
            assert proc.wait(60) == 1
            assert proc.stderr is not None
            assert b"model failed to load" in proc.stderr.read()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
