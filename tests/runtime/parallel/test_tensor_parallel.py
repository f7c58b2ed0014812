"""Tensor- and expert-parallel layers on 2 and 4 gloo ranks equal the single process.

Each rank loads only its shard through the parallel layers and compares its output with
the single-process reference (the model's own classes, or the plain kernels on the full
weights); the resident bytes of each sharded layer are 1/TP of the whole, plus what is
replicated.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

Run = Callable[[str, int], list[dict[str, Any]]]
TOL = 1e-5

CHECKS = [
    "column_gathered",
    "column_local",
    "row",
    "mlp",
    "mla_q_lora",
    "mla_q_proj_bias",
    "qkv_qwen2",
    "qkv_llama",
    "embedding",
    "lm_head",
    "moe_block_ep",
    "ep_routed",
    "ep_gathered_tokens",
    "tp_routed",
]
# (check, share of the full bytes this rank must hold besides what is replicated)
SHARDED = ["column_local", "row", "mlp", "embedding", "lm_head", "ep_routed", "tp_routed"]


@pytest.mark.parametrize("world", [2, 4])
@pytest.mark.parametrize("check", CHECKS)
def test_layer_matches_single_process(run_suite: Run, world: int, check: str) -> None:
    reports = run_suite("tp", world)
    errors = [r[check]["err"] for r in reports]
    assert max(errors) <= TOL, f"{check} at TP={world}: per-rank max error {errors}"


@pytest.mark.parametrize("world", [2, 4])
@pytest.mark.parametrize("check", [*SHARDED, "mla_q_lora", "mla_q_proj_bias"])
def test_resident_bytes_are_one_over_tp(run_suite: Run, world: int, check: str) -> None:
    for rank, report in enumerate(run_suite("tp", world)):
        entry = report[check]
        replicated = entry.get("replicated_bytes", 0)
        want = replicated + (entry["full_bytes"] - replicated) / world
        assert entry["bytes"] == pytest.approx(want, rel=0.01), (check, rank, entry)
        assert entry["bytes"] < entry["full_bytes"]


@pytest.mark.parametrize("world", [2, 4])
def test_groups_and_head_assignment(run_suite: Run, world: int) -> None:
    reports = run_suite("tp", world)
    assert all(r["tp_ranks"] == list(range(world)) for r in reports)
    assert all(r["ep_ranks"] == list(range(world)) for r in reports)
    # qwen2: 4 query heads, 2 KV heads; llama: 1 KV head (replicated on every rank)
    qwen = [r["qkv_qwen2"]["kv_heads"] for r in reports]
    llama = [r["qkv_llama"]["kv_heads"] for r in reports]
    if world == 2:
        assert qwen == [[0, 1], [1, 2]]
    else:
        assert qwen == [[0, 1], [0, 1], [1, 2], [1, 2]]
    assert llama == [[0, 1]] * world
    assert [r["qkv_qwen2"]["q_heads"] for r in reports] == [
        [i * 4 // world, (i + 1) * 4 // world] for i in range(world)
    ]
    # tokens split unevenly over the EP ranks still come back to their owner
    assert sum(r["ep_gathered_tokens"]["rows"] for r in reports) == 9
