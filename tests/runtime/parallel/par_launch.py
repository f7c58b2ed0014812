"""Run the multi-process test suites on loopback gloo worlds and collect the reports.

Used by the session fixture in ``conftest.py``. One ``par_worker.py`` process (its own
session, one thread per rank) forks the ranks of each world size. The launch has a hard
wall-clock limit: on expiry the whole process group is killed, so a broken collective
fails the tests instead of hanging them.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

WORKER = Path(__file__).with_name("par_worker.py")


def launch(
    plan: dict[int, list[str]], ckpts: dict[str, str], out_dir: Path, timeout: float = 150.0
) -> dict[int, list[dict[str, Any]]]:
    """Run each world size's suites; returns ``{world: [rank report, ...]}``, rank 0 first.

    Raises:
        RuntimeError: a rank failed, or the launch ran past ``timeout`` seconds.
    """
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PAR_CKPTS": json.dumps(ckpts)}
    env["PAR_OUT"] = str(out_dir)
    proc = subprocess.Popen(
        [sys.executable, str(WORKER), json.dumps(plan)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        log, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        log, _ = proc.communicate()
        tail = log.decode(errors="replace")[-4000:]
        raise RuntimeError(f"parallel suites ran past {timeout:.0f} s; killed\n{tail}") from None
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # forked ranks still alive, if any
    if proc.returncode != 0:
        tail = log.decode(errors="replace")[-6000:]
        raise RuntimeError(f"parallel suites failed (exit {proc.returncode}):\n{tail}")
    return {
        world: [
            json.loads((out_dir / f"world{world}" / f"rank{r}.json").read_text(encoding="utf-8"))
            for r in range(world)
        ]
        for world in plan
    }
