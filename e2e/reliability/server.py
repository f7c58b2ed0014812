"""A ``deepseek-runtime serve`` process for the reliability suites, with what they observe.

Beyond starting and stopping the server, the suites need its worker processes (to kill
one), its resident memory (bounded under overload) and its KV-cache and request gauges
from ``/metrics`` (nothing leaked after an attack). Used by the runtime suites' tests and
by ``bench/reliability.py``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def metric(text: str, name: str, labels: str = "") -> float | None:
    """Sum of the samples ``name{...labels...}`` in a Prometheus text page (None if absent)."""
    total: float | None = None
    for line in text.splitlines():
        named = line.startswith(name) and line[len(name) : len(name) + 1] in (" ", "{")
        if named and labels in line:
            total = (total or 0.0) + float(line.rsplit(" ", 1)[1])
    return total


@dataclass(frozen=True, slots=True)
class KvState:
    """The engine's gauges after an attack: leaked blocks and requests should be 0."""

    blocks_total: int
    blocks_free: int
    running: int
    waiting: int

    @property
    def leaked_blocks(self) -> int:
        return self.blocks_total - self.blocks_free


@dataclass
class RuntimeServer:
    """``python -m deepseek_runtime.cli serve --model DIR`` on a free loopback port."""

    model_dir: Path
    args: list[str] = field(default_factory=list)
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def model(self) -> str:
        return self.model_dir.name

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError("server not started")
        return self.proc.pid

    def start(self, log_dir: Path, timeout: float = 180.0) -> RuntimeServer:
        self.port = free_port()
        cmd = [
            sys.executable,
            "-m",
            "deepseek_runtime.cli",
            "serve",
            "--model",
            str(self.model_dir),
            "--port",
            str(self.port),
            *self.args,
        ]
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"server-{self.port}.log"
        with open(self.log_path, "wb") as log:
            env = {**os.environ, "PYTHONUNBUFFERED": "1"}
            self.proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log()[-4000:]}")
            try:
                if httpx.get(self.url + "/ready", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"server not ready in {timeout}s:\n{self.log()[-4000:]}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def terminate(self) -> None:
        if self.alive() and self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 30.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def workers(self) -> list[int]:
        """Pids of the server's child processes (tensor-parallel ranks > 0)."""
        return [c.pid for c in psutil.Process(self.pid).children(recursive=True)]

    def rss_bytes(self) -> int:
        """Resident memory of the server and its children."""
        parent = psutil.Process(self.pid)
        procs = [parent, *parent.children(recursive=True)]
        total = 0
        for p in procs:
            try:
                total += int(p.memory_info().rss)
            except psutil.NoSuchProcess:
                continue
        return total

    def metrics(self) -> str:
        return httpx.get(self.url + "/metrics", headers=self.headers, timeout=10).text

    def kv_state(self) -> KvState:
        text = self.metrics()

        def get(name: str) -> int:
            value = metric(text, name)
            if value is None:
                raise AssertionError(f"{name} missing from /metrics")
            return int(value)

        return KvState(
            blocks_total=get("dsr:kv_cache_blocks_total"),
            blocks_free=get("dsr:kv_cache_blocks_free"),
            running=get("vllm:num_requests_running"),
            waiting=get("vllm:num_requests_waiting"),
        )

    def wait_idle(self, timeout: float = 30.0) -> KvState:
        """The KV state once no request runs or waits (or when ``timeout`` passes)."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.kv_state()
            if (state.running == 0 and state.waiting == 0) or time.monotonic() > deadline:
                return state
            time.sleep(0.1)
