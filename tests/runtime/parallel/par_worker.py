"""One rank of a multi-process test: join the gloo world, run suites, write a JSON report.

Started by ``par_launch.launch`` (never by pytest directly). Reads ``RANK``,
``WORLD_SIZE``, ``MASTER_ADDR`` / ``MASTER_PORT``, the checkpoint directories
(``PAR_CKPTS``) and the report folder (``PAR_OUT``) from the environment. Any exception
exits non-zero, which the launcher turns into a test failure (and kills the other ranks).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
from par_checks_moe_pp import fp8_suite, pp_suite, tp2pp2_suite
from par_checks_tp import tp_suite

from deepseek_runtime.parallel.config import ParallelConfig
from deepseek_runtime.parallel.groups import destroy_process_groups, init_distributed

Suite = Callable[[int, int, dict[str, str]], dict[str, Any]]
SUITES: dict[str, Suite] = {
    "tp": tp_suite,
    "pp": pp_suite,
    "tp2pp2": tp2pp2_suite,
    "fp8": fp8_suite,
}


def main() -> int:
    suites = sys.argv[1:]
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    ckpts: dict[str, str] = json.loads(os.environ["PAR_CKPTS"])
    torch.set_num_threads(1)
    torch.manual_seed(0)
    config = ParallelConfig(tensor=world, world_size=world, rank=rank)
    init_distributed(
        config,
        os.environ["MASTER_ADDR"],
        int(os.environ["MASTER_PORT"]),
        timeout=timedelta(seconds=30),
    )
    try:
        report = {suite: SUITES[suite](rank, world, ckpts) for suite in suites}
    finally:
        destroy_process_groups()
    out = Path(os.environ["PAR_OUT"]) / f"rank{rank}.json"
    out.write_text(json.dumps(report), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
