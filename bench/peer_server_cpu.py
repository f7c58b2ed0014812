"""The server half of ``peer_vllm_cpu.py``: both engines behind their own HTTP servers, one load.

Called by ``peer_vllm_cpu.py`` (``--server-requests``). Our server is ``deepseek-runtime
serve`` from the project venv; vLLM's is its own OpenAI server
(``vllm.entrypoints.openai.api_server``) from the cached vLLM venv; both on the same
checkpoint, fp32, block size 16, greedy, EOS ignored, with ``OMP_NUM_THREADS`` (and, for
vLLM, ``VLLM_CPU_OMP_THREADS_BIND``) set to the thread count. One open-loop load generator,
``server_load._run_http`` (aiohttp, streamed ``/v1/completions`` with ``logprobs=0`` so
each chunk says how many tokens it carries), replays the same Poisson arrival schedule and
the same token-id prompts against each server in turn: first at ``--server-rate``
requests/s, then as a burst (every request at t=0). A server is started, warmed with a few
requests, measured and stopped before the other starts, so the two never share the CPU.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from server_load import _run_http, _summary

STARTUP_S = 600  # vLLM's CPU server compiles nothing in eager mode but loads slowly on a busy host


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _command(kind: str, python: str, model_dir: Path) -> list[str]:
    if kind == "ours":
        return [python, "-m", "deepseek_runtime.cli", "serve", "--model", str(model_dir)]
    return [
        python,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(model_dir),
        "--enforce-eager",
        "--kv-cache-memory-bytes",
        str(512 * 1024 * 1024),
        "--seed",
        "0",
    ]


def _start(
    kind: str, python: str, model_dir: Path, *, threads: int, block_size: int, env: dict[str, str]
) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    cmd = _command(kind, python, model_dir)
    cmd += ["--port", str(port), "--served-model-name", "bench", "--max-model-len", "1024"]
    cmd += ["--max-num-seqs", "128", "--max-num-batched-tokens", "2048"]
    cmd += ["--block-size", str(block_size), "--dtype", "float32"]
    if kind == "ours":
        cmd += ["--log-level", "warning"]
    env = {**env, "OMP_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}
    if kind == "vllm":
        env["VLLM_CPU_OMP_THREADS_BIND"] = f"0-{threads - 1}" if threads > 1 else "0"
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = (proc.stderr.read() if proc.stderr else b"").decode(errors="replace")
            raise RuntimeError(f"{kind} server exited {proc.returncode}: {tail[-400:]}")
        try:
            probe = "/ready" if kind == "ours" else "/health"
            if httpx.get(url + probe, timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    _stop(proc)
    raise RuntimeError(f"{kind} server not ready in {STARTUP_S} s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def plans(
    requests: int, rate: float, prompt_tokens: int, seed: int
) -> list[tuple[str, list[list[int]], list[float]]]:
    """``(name, prompts, arrivals)`` of the Poisson level and the burst level."""
    rng = random.Random(seed)
    out = []
    for name, r in ((f"rate={rate:g}", rate), ("burst", float("inf"))):
        prompts = [[rng.randrange(3, 200) for _ in range(prompt_tokens)] for _ in range(requests)]
        t, arrivals = 0.0, []
        for _ in range(requests):
            t += rng.expovariate(r) if r != float("inf") else 0.0
            arrivals.append(t)
        out.append((name, prompts, arrivals))
    return out


def measure(
    kind: str,
    *,
    python: str,
    model_dir: Path,
    threads: int,
    block_size: int,
    levels: list[tuple[str, list[list[int]], list[float]]],
    max_tokens: int,
    env: dict[str, str],
) -> dict[str, Any]:
    """One server's summary per load level (or ``{"error": ...}``)."""
    try:
        proc, url = _start(kind, python, model_dir, threads=threads, block_size=block_size, env=env)
    except RuntimeError as exc:
        return {"error": str(exc)}
    try:
        warm = levels[-1][1][:4]
        asyncio.run(_run_http(url, warm, [0.0] * len(warm), max_tokens))
        result: dict[str, Any] = {}
        for name, prompts, arrivals in levels:
            res, span = asyncio.run(_run_http(url, prompts, arrivals, max_tokens))
            result[name] = _summary(res, span, max_tokens)
        return result
    finally:
        _stop(proc)


def compare(ours: dict[str, Any], peer: dict[str, Any]) -> dict[str, Any]:
    """Per level: both summaries and the output tok/s ratio."""
    row: dict[str, Any] = {"ours": ours, "vllm": peer}
    if "error" in ours or "error" in peer:
        return row
    row["ratio_ours_over_vllm"] = {
        level: round(ours[level]["output_tokens_per_s"] / peer[level]["output_tokens_per_s"], 3)
        for level in ours
        if ours[level]["output_tokens_per_s"] and peer[level]["output_tokens_per_s"]
    }
    return row


if __name__ == "__main__":
    sys.exit("run through peer_vllm_cpu.py")
