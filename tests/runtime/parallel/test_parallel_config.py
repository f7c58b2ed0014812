"""The layout arithmetic: validation, group membership, shard bounds, layer partition."""

from __future__ import annotations

import pytest

from deepseek_runtime.parallel.config import (
    ParallelConfig,
    check_divisible,
    kv_head_bounds,
    shard_bounds,
)
from deepseek_runtime.parallel.groups import ParallelContext
from deepseek_runtime.parallel.pipeline import partition_layers

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tensor": 0}, "tensor-parallel size must be >= 1"),
        ({"pipeline": 0, "world_size": 0}, "pipeline-parallel size must be >= 1"),
        ({"tensor": 2, "world_size": 3}, "world size 3 must equal"),
        ({"tensor": 2, "world_size": 2, "rank": 2}, "rank 2 is outside"),
        ({"rank": -1}, "rank -1 is outside"),
    ],
)
def test_config_rejects_bad_layouts(kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ParallelConfig(**kwargs)


def test_ranks_are_tensor_parallel_first() -> None:
    configs = [ParallelConfig(tensor=2, pipeline=3, rank=r, world_size=6) for r in range(6)]
    assert [(c.tp_rank, c.pp_rank) for c in configs] == [
        (0, 0), (1, 0), (0, 1), (1, 1), (0, 2), (1, 2)
    ]  # fmt: skip
    layout = configs[0]
    assert [layout.tp_group_ranks(s) for s in range(3)] == [(0, 1), (2, 3), (4, 5)]
    assert [layout.pp_group_ranks(t) for t in range(2)] == [(0, 2, 4), (1, 3, 5)]
    assert layout.expert_size == 1
    assert ParallelConfig(tensor=4, expert=True, world_size=4).expert_size == 4


def test_single_context_has_no_neighbours() -> None:
    ctx = ParallelContext.single()
    assert (ctx.tp.size, ctx.pp.size, ctx.ep.size) == (1, 1, 1)
    assert ctx.is_first_stage and ctx.is_last_stage
    assert ctx.next_stage_rank is None and ctx.prev_stage_rank is None


def test_shard_bounds_cover_the_dimension_once() -> None:
    assert [shard_bounds(12, 3, i) for i in range(3)] == [(0, 4), (4, 8), (8, 12)]
    with pytest.raises(ValueError, match=r"vocab_size \(10\) is not divisible by .* 4"):
        shard_bounds(10, 4, 0, "vocab_size")
    with pytest.raises(ValueError, match="part 2 of 2"):
        shard_bounds(10, 2, 2)
    assert check_divisible(128, 8, "num_attention_heads") == 16
    with pytest.raises(ValueError, match="num_attention_heads"):
        check_divisible(12, 8, "num_attention_heads")


@pytest.mark.parametrize(
    ("kv_heads", "tensor", "want"),
    [
        (8, 4, [(0, 2), (2, 4), (4, 6), (6, 8)]),  # split
        (2, 2, [(0, 1), (1, 2)]),
        (2, 4, [(0, 1), (0, 1), (1, 2), (1, 2)]),  # each KV head on 2 ranks
        (1, 4, [(0, 1)] * 4),  # MQA: replicated everywhere
    ],
)
def test_kv_heads_split_or_replicate(
    kv_heads: int, tensor: int, want: list[tuple[int, int]]
) -> None:
    assert [kv_head_bounds(kv_heads, tensor, r) for r in range(tensor)] == want


def test_kv_heads_that_do_not_fit_are_an_error() -> None:
    with pytest.raises(ValueError, match="must divide, or be a multiple of"):
        kv_head_bounds(2, 3, 0)
    with pytest.raises(ValueError, match="num_key_value_heads"):
        kv_head_bounds(6, 4, 0)


@pytest.mark.parametrize(
    ("layers", "stages", "sizes"),
    [
        (3, 1, [3]),
        (4, 2, [2, 2]),
        (3, 2, [2, 1]),  # the last stage also runs lm_head: it gets the smaller share
        (10, 4, [2, 3, 3, 2]),  # extras go to the middle stages first
        (11, 4, [3, 3, 3, 2]),
        (61, 8, [7, 8, 8, 8, 8, 8, 7, 7]),  # DeepSeek-V3: 61 layers
        (5, 5, [1, 1, 1, 1, 1]),
    ],
)
def test_partition_layers_is_balanced_and_contiguous(
    layers: int, stages: int, sizes: list[int]
) -> None:
    ranges = partition_layers(layers, stages)
    assert [len(r) for r in ranges] == sizes
    assert [i for r in ranges for i in r] == list(range(layers))


def test_partition_refuses_more_stages_than_layers() -> None:
    with pytest.raises(ValueError, match="deeper than the model's 3 layers"):
        partition_layers(3, 4)
    with pytest.raises(ValueError, match=">= 1"):
        partition_layers(3, 0)
