"""A real Prometheus with no scrape targets, for canary analysis by constant PromQL.

The operator-crash suite's canary DSD queries ``vector(0.001)`` (which passes its
``max: 0.01``), so the canary's promotion depends only on the operator, not on load.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from e2e.operator_harness import wait_for


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def constant_prometheus(binary: Path, workdir: Path) -> Iterator[str]:
    """Run ``binary`` on a free loopback port; yield its address."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "prometheus.yml").write_text("global: {scrape_interval: 15s}\n")
    port = _free_port()
    with (workdir / "prometheus.log").open("wb") as log:
        proc = subprocess.Popen(
            [
                str(binary),
                f"--config.file={workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    address = f"http://127.0.0.1:{port}"
    try:
        wait_for(
            "prometheus ready",
            lambda: httpx.get(f"{address}/-/ready", timeout=2).status_code == 200,
            60,
        )
        yield address
    finally:
        proc.terminate()
        proc.wait(timeout=20)
