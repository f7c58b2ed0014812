"""Shard-wise reads in one process: each rank's slice (and FP8 block scales) is exactly the
matching slice of the full tensor, owns only its own bytes, and bad splits are errors."""

from __future__ import annotations

import pytest
import torch

from deepseek_runtime.checkpoint.weights import CheckpointError, WeightStore
from deepseek_runtime.kernels.fp8 import FP8_DTYPE, Fp8Weight
from deepseek_runtime.kernels.linear import Weight
from deepseek_runtime.model.mlp import DenseMLP
from deepseek_runtime.parallel.config import shard_bounds
from deepseek_runtime.parallel.groups import ParallelContext
from deepseek_runtime.parallel.mlp import ParallelMLP
from deepseek_runtime.parallel.shard_loading import (
    ShardError,
    load_linear_slice,
    load_slice,
    weight_nbytes,
)

pytestmark = pytest.mark.unit

BLOCK = 32
# (name, split dim): column-parallel rows, row-parallel columns
SPLITS = [
    ("model.layers.0.mlp.gate_proj.weight", 0),
    ("model.layers.0.mlp.up_proj.weight", 0),
    ("model.layers.0.mlp.down_proj.weight", 1),
    ("model.layers.0.self_attn.q_b_proj.weight", 0),
    ("model.layers.0.self_attn.kv_b_proj.weight", 0),
    ("model.layers.0.self_attn.o_proj.weight", 1),
    ("model.layers.1.mlp.shared_experts.gate_proj.weight", 0),
    ("model.layers.1.mlp.shared_experts.down_proj.weight", 1),
    ("model.layers.1.mlp.experts.3.down_proj.weight", 1),
]


def _cut(t: torch.Tensor, dim: int, bounds: tuple[int, int]) -> torch.Tensor:
    return t.narrow(dim, bounds[0], bounds[1] - bounds[0])


def _owns_only_itself(t: torch.Tensor) -> bool:
    return int(t.untyped_storage().nbytes()) == t.numel() * t.element_size()


@pytest.mark.parametrize("tp", [2])
@pytest.mark.parametrize(("name", "dim"), SPLITS)
def test_fp8_slices_and_scales_match_the_full_tensor(
    ckpts: dict[str, str], name: str, dim: int, tp: int
) -> None:
    kept = WeightStore(ckpts["v3_fp8"], fp8_block=(BLOCK, BLOCK), keep_fp8=True)
    dense = WeightStore(ckpts["v3_fp8"], fp8_block=(BLOCK, BLOCK))
    full, scale = kept.raw(name), kept.raw(f"{name}_scale_inv")
    assert full.dtype == FP8_DTYPE
    shape = tuple(full.shape)
    whole_dense = dense.get(name, shape)
    for rank in range(tp):
        bounds = shard_bounds(shape[dim], tp, rank)
        shard = load_linear_slice(kept, name, shape, dim, bounds)
        assert isinstance(shard, Fp8Weight)
        assert torch.equal(shard.data.view(torch.uint8), _cut(full, dim, bounds).view(torch.uint8))
        block_bounds = (bounds[0] // BLOCK, -(-bounds[1] // BLOCK))
        assert torch.equal(shard.scale_inv, _cut(scale.float(), dim, block_bounds))
        assert _owns_only_itself(shard.data) and _owns_only_itself(shard.scale_inv)
        dequantized = load_linear_slice(dense, name, shape, dim, bounds)
        assert isinstance(dequantized, torch.Tensor)
        assert torch.equal(dequantized, _cut(whole_dense, dim, bounds))


@pytest.mark.parametrize("tp", [2, 4])
def test_dense_shards_sum_to_the_whole(ckpts: dict[str, str], tp: int) -> None:
    store = WeightStore(ckpts["v3"])
    total = per_rank = 0
    for name, dim in SPLITS:
        full = store.raw(name)
        total += full.numel() * full.element_size()
        shards = []
        for rank in range(tp):
            bounds = shard_bounds(full.shape[dim], tp, rank)
            shard = load_linear_slice(store, name, tuple(full.shape), dim, bounds)
            assert isinstance(shard, torch.Tensor) and _owns_only_itself(shard)
            shards.append(shard)
        assert torch.equal(torch.cat(shards, dim=dim), full)
        per_rank += weight_nbytes(shards[0])
    assert per_rank * tp == total


def test_split_through_an_fp8_block_is_an_error(ckpts: dict[str, str]) -> None:
    # default tiny V3: q_b_proj has 4 heads x 24 rows; TP=2 cuts at row 48, inside a block
    store = WeightStore(ckpts["v3_fp8_unaligned"], fp8_block=(BLOCK, BLOCK), keep_fp8=True)
    name = "model.layers.0.self_attn.q_b_proj.weight"
    shape = tuple(store.raw(name).shape)
    with pytest.raises(ShardError, match=r"q_b_proj.*\[48:96\) of 96 does not fall on 32-wide"):
        load_linear_slice(store, name, shape, 0, (48, 96))
    with pytest.raises(ShardError, match="does not fall on"):
        load_slice(store, name, shape, 0, (0, 48))


def test_bad_slices_name_the_tensor(ckpts: dict[str, str]) -> None:
    store = WeightStore(ckpts["v3"])
    name = "model.layers.0.mlp.gate_proj.weight"
    with pytest.raises(CheckpointError, match=r"gate_proj.weight.*has shape \(128, 64\)"):
        store.raw_slice(name, (64, 64), 0, 0, 32)
    with pytest.raises(CheckpointError, match="outside"):
        store.raw_slice(name, (128, 64), 0, 64, 160)
    with pytest.raises(CheckpointError, match="missing tensor"):
        store.raw_slice("model.layers.9.nothing", (1,), 0, 0, 1)


def test_single_rank_layers_equal_the_model(ckpts: dict[str, str]) -> None:
    store = WeightStore(ckpts["v3_fp8"], fp8_block=(BLOCK, BLOCK), keep_fp8=True)
    alone = ParallelContext.single()
    layer = ParallelMLP(store, "model.layers.0.mlp", 64, 128, alone)
    ref = DenseMLP(store, "model.layers.0.mlp", 64, 128)
    x = torch.randn(5, 64, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(layer(x), ref(x), atol=1e-6, rtol=0)
    weights: list[Weight] = [ref.gate_up, ref.down]
    assert layer.nbytes == sum(weight_nbytes(w) for w in weights)
