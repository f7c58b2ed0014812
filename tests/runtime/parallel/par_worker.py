"""The ranks of the multi-process tests: a supervisor forks each gloo world's ranks.

Started once per test session by ``par_launch.launch`` (never by pytest directly), with a
plan ``{world size: [suite, ...]}``. Importing torch is most of a rank's start-up cost on
a busy 2-core machine, so this process imports it once and forks the ranks of each world
in turn (before running any torch op, so no thread pool is inherited). A rank joins the
world on ``127.0.0.1`` and a free port, runs its suites and writes
``world{N}/rank{R}.json``. The first rank to fail kills its siblings and the supervisor
exits non-zero; the launcher's deadline covers anything else.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import traceback
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
from par_checks_moe_pp import dead_peer_suite, fp8_suite, pp_suite, tp2pp2_suite
from par_checks_tp import tp_suite

from deepseek_runtime.parallel.config import ParallelConfig
from deepseek_runtime.parallel.groups import destroy_process_groups, init_distributed

Suite = Callable[[int, int, dict[str, str]], dict[str, Any]]
SUITES: dict[str, Suite] = {
    "tp": tp_suite,
    "pp": pp_suite,
    "tp2pp2": tp2pp2_suite,
    "fp8": fp8_suite,
    "dead_peer": dead_peer_suite,
}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_rank(rank: int, world: int, port: int, suites: list[str], out: Path) -> None:
    ckpts: dict[str, str] = json.loads(os.environ["PAR_CKPTS"])
    torch.set_num_threads(1)
    torch.manual_seed(0)
    config = ParallelConfig(tensor=world, world_size=world, rank=rank)
    init_distributed(config, "127.0.0.1", port, timeout=timedelta(seconds=30))
    try:
        report = {suite: SUITES[suite](rank, world, ckpts) for suite in suites}
    finally:
        destroy_process_groups()
    (out / f"rank{rank}.json").write_text(json.dumps(report), encoding="utf-8")


def run_world(world: int, suites: list[str], out: Path) -> bool:
    """Fork ``world`` ranks and wait; on the first failure kill the rest. True if all passed."""
    out.mkdir(parents=True, exist_ok=True)
    port = free_port()
    children: list[int] = []
    for rank in range(world):
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                run_rank(rank, world, port, suites, out)
            except BaseException:
                traceback.print_exc()
                code = 1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        children.append(pid)
    ok = True
    while children:
        pid, status = os.wait()
        children.remove(pid)
        if os.waitstatus_to_exitcode(status) != 0 and ok:
            ok = False
            print(f"world {world}: a rank (pid {pid}) failed; killing the others", flush=True)
            for other in children:
                os.kill(other, signal.SIGKILL)
    return ok


def main() -> int:
    plan: dict[str, list[str]] = json.loads(sys.argv[1])
    root = Path(os.environ["PAR_OUT"])
    for world, suites in plan.items():
        if not run_world(int(world), suites, root / f"world{world}"):
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
