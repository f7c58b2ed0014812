"""Session fixtures: the tiny checkpoints, and each multi-process suite run once.

All gloo worlds start once per session (``par_launch.launch``, hard timeout)
and every test reads its own check out of the ranks' reports, so a failing layer fails
its own test while the processes are paid for once.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from par_launch import launch

from deepseek_runtime.checkpoint.make_tiny import make_tiny_checkpoint

# FP8 with 32x32 blocks and head / expert widths whose TP=2 shards fall on block
# boundaries (q_b: 2 heads x 32, kv_b: 2 x 32, o_proj: 2 x 16 ... x 2 ranks, experts 64).
FP8_ALIGNED = {"qk_rope_head_dim": 16, "moe_intermediate_size": 64}

Reports = list[dict[str, Any]]
# One launch (one torch import, ranks forked) runs every suite of every world size:
# starting a rank costs far more than the checks on a busy 2-core machine.
LAUNCHES = {2: ["tp", "pp", "fp8", "dead_peer"], 4: ["tp", "tp2pp2"]}


@pytest.fixture(scope="session")
def ckpts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("parallel-ckpts")
    made = {
        "v3": make_tiny_checkpoint(root / "v3", "v3", shards=2),
        "v2_bias": make_tiny_checkpoint(root / "v2_bias", "v2", overrides={"attention_bias": True}),
        "qwen2": make_tiny_checkpoint(root / "qwen2", "qwen2"),
        "llama": make_tiny_checkpoint(root / "llama", "llama"),
        "v3_fp8": make_tiny_checkpoint(
            root / "v3_fp8_b32", "v3", overrides=FP8_ALIGNED, fp8=True, fp8_block=32
        ),
        "v3_fp8_unaligned": make_tiny_checkpoint(
            root / "v3_fp8_b32_unaligned", "v3", fp8=True, fp8_block=32
        ),
    }
    return {name: str(path) for name, path in made.items()}


@pytest.fixture(scope="session")
def run_suite(
    ckpts: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Callable[[str, int], Reports]:
    cache: dict[int, Reports] = {}
    out = tmp_path_factory.mktemp("parallel-reports")

    def run(suite: str, world: int) -> Reports:
        if suite not in LAUNCHES[world]:
            raise ValueError(f"suite {suite!r} is not launched on {world} ranks")
        if not cache:
            cache.update(launch(LAUNCHES, ckpts, Path(out)))
        return [rank_report[suite] for rank_report in cache[world]]

    return run
