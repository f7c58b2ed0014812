"""Start N gloo ranks on loopback as subprocesses and collect what each one reports.

Used by the multi-process tests. Each rank runs ``par_worker.py SUITE...`` with
``MASTER_ADDR=127.0.0.1`` and a free port, one thread, and writes a JSON report. The
launch has a hard wall-clock limit: on expiry (or when any rank fails) every rank still
running is killed, so a broken collective fails the test instead of hanging it.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

WORKER = Path(__file__).with_name("par_worker.py")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def launch(
    suites: list[str], world: int, ckpts: dict[str, str], out_dir: Path, timeout: float = 150.0
) -> list[dict[str, Any]]:
    """Run ``suites`` (in order, in the same processes) on ``world`` ranks.

    Returns each rank's ``{suite: report}``, rank 0 first.

    Raises:
        RuntimeError: a rank exited non-zero or the launch ran past ``timeout`` seconds.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {
        **os.environ,
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
        "WORLD_SIZE": str(world),
        "OMP_NUM_THREADS": "1",
        "PAR_CKPTS": json.dumps(ckpts),
        "PAR_OUT": str(out_dir),
    }
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), *suites],
            env={**env, "RANK": str(rank)},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for rank in range(world)
    ]
    deadline = time.monotonic() + timeout
    try:
        while any(p.poll() is None for p in procs):
            failed = [p for p in procs if p.poll() not in (None, 0)]
            if failed or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        logs = [p.communicate()[0].decode(errors="replace") for p in procs]
    bad = [(rank, p.returncode) for rank, p in enumerate(procs) if p.returncode != 0]
    if bad:
        detail = "\n".join(f"--- rank {r} (exit {rc}) ---\n{logs[r][-3000:]}" for r, rc in bad)
        raise RuntimeError(f"suites {suites} on {world} ranks failed:\n{detail}")
    return [
        json.loads((out_dir / f"rank{rank}.json").read_text(encoding="utf-8"))
        for rank in range(world)
    ]
