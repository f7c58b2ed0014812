"""The KV cache set-up on a real tiny runner (CPU): the dummy batch, its measured peak,
and the decide / check / reallocate steps of ``backends.kv_setup``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from deepseek_runtime.backends.kv_profile import (
    dummy_batch,
    dummy_batch_blocks,
    peak_cpu_allocation,
    run_dummy_batch,
)
from deepseek_runtime.backends.kv_setup import (
    PLACEHOLDER_BLOCKS,
    load_num_blocks,
    runner_bytes_per_block,
    size_kv_cache,
)
from deepseek_runtime.backends.options import NativeEngineOptions
from deepseek_runtime.engine.kv_sizing import KVCacheTooSmallError
from deepseek_runtime.model.runner import ModelRunner

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("tokens", "seqs", "lengths"),
    [(10, 4, [3, 3, 2, 2]), (3, 8, [1, 1, 1]), (64, 1, [64]), (33, 2, [17, 16])],
)
def test_dummy_batch_spreads_the_token_budget(tokens: int, seqs: int, lengths: list[int]) -> None:
    chunks = dummy_batch(tokens, seqs, 16, 50)
    assert [len(c.token_ids) for c in chunks] == lengths
    assert all(c.start_pos == 0 and max(c.token_ids) < 50 for c in chunks)
    blocks = [b for c in chunks for b in c.block_table]
    assert blocks == list(range(len(blocks)))  # each sequence on blocks of its own
    assert all(len(c.block_table) == -(-len(c.token_ids) // 16) for c in chunks)
    assert dummy_batch_blocks(tokens, seqs, 16) == len(blocks)


@pytest.fixture
def runner(make_ckpt: Callable[[str, str], Path]) -> ModelRunner:
    return ModelRunner.from_pretrained(
        make_ckpt("v3-default", "v3"), block_size=16, num_blocks=dummy_batch_blocks(128, 8, 16)
    )


@pytest.mark.slow  # the profiler's allocation events cost about 10 s on 2 busy cores
def test_dummy_batch_runs_and_its_peak_grows_with_the_batch(runner: ModelRunner) -> None:
    small = peak_cpu_allocation(lambda: run_dummy_batch(runner, 8, 8))
    large = peak_cpu_allocation(lambda: run_dummy_batch(runner, 128, 8))
    assert 0 < small < large
    # at least the hidden states of the large batch were live at once
    assert large >= 128 * int(runner.config.hidden_size) * 4


def _options(model: Path, **kw: object) -> NativeEngineOptions:
    return NativeEngineOptions(model_dir=model, device="cpu", **kw)  # type: ignore[arg-type]


def test_load_num_blocks(tmp_path: Path) -> None:
    assert load_num_blocks(_options(tmp_path), "cpu") == (PLACEHOLDER_BLOCKS, None)
    assert load_num_blocks(_options(tmp_path, num_blocks=7), "cpu") == (7, None)
    assert load_num_blocks(_options(tmp_path, kv_cache_memory_bytes=99), "cuda") == (None, 99)
    opts = _options(tmp_path, max_num_batched_tokens=512, max_num_seqs=8)
    assert load_num_blocks(opts, "cuda") == (dummy_batch_blocks(512, 8, 16), None)


def test_cpu_fraction_reallocates_to_the_scheduler_cap(runner: ModelRunner, tmp_path: Path) -> None:
    sizing = size_kv_cache(runner, _options(tmp_path, max_num_seqs=3, max_model_len=100), "cpu")
    assert sizing.source == "cpu_kv_cache_fraction"
    assert sizing.num_blocks == sizing.cap_blocks == 3 * 7  # ceil(100 / 16) = 7 per sequence
    assert runner.num_blocks == 21
    assert runner.kv_cache.shape[1] == 21 * 16
    assert sizing.bytes_per_block == runner_bytes_per_block(runner)
    assert sizing.memory_bytes == runner.kv_cache.numel() * runner.kv_cache.element_size()
    assert runner.kv_cache.dtype == torch.float32 and sizing.dtype == "float32"


def test_cpu_fraction_too_small_names_the_option(runner: ModelRunner, tmp_path: Path) -> None:
    opts = _options(tmp_path, cpu_kv_cache_fraction=1e-9, max_model_len=64)
    with pytest.raises(KVCacheTooSmallError, match=r"^--cpu-kv-cache-fraction: "):
        size_kv_cache(runner, opts, "cpu")


def test_explicit_budget_is_kept_and_checked(runner: ModelRunner, tmp_path: Path) -> None:
    per_block = runner_bytes_per_block(runner)
    before = runner.num_blocks
    sizing = size_kv_cache(runner, _options(tmp_path, kv_cache_memory_bytes=10 * per_block), "cpu")
    assert (sizing.source, sizing.num_blocks, runner.num_blocks) == (
        "kv_cache_memory_bytes",
        before,  # the loader already sized it from the same budget
        before,
    )
    opts = _options(tmp_path, num_blocks=before, max_model_len=(before + 1) * 16)
    with pytest.raises(KVCacheTooSmallError, match=r"^--num-blocks: .* or more, or --max"):
        size_kv_cache(runner, opts, "cpu")
