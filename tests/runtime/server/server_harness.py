"""Start ``deepseek-runtime serve`` as a real process on loopback for the server tests."""

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

REPO = Path(__file__).resolve().parents[3]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServerProcess:
    model_dir: Path
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    grpc: bool = False
    port: int = 0
    grpc_port: int | None = None
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, log_dir: Path, timeout: float = 120.0) -> ServerProcess:
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
        if self.grpc:
            self.grpc_port = free_port()
            cmd += ["--grpc-port", str(self.grpc_port)]
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        self.log_path = log_dir / f"server-{self.port}.log"
        log = open(self.log_path, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log()}")
            try:
                if httpx.get(self.url + "/ready", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"server not ready in {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def terminate(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
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

    def metrics(self) -> str:
        return httpx.get(self.url + "/metrics", timeout=5).text


def metric_value(text: str, name: str, labels: str = "") -> float | None:
    """Value of the first sample ``name{...labels...}`` in a Prometheus text page."""
    for line in text.splitlines():
        if line.startswith(name) and (line[len(name)] in " {") and labels in line:
            return float(line.rsplit(" ", 1)[1])
    return None
