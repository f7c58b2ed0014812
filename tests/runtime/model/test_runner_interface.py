"""ModelRunner contract the engine relies on: sizing, validation errors, batching invariance."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from deepseek_runtime.model.runner import ModelRunner, SeqChunk

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def runner(make_ckpt: Callable[..., Path]) -> ModelRunner:
    return ModelRunner.from_pretrained(make_ckpt("v3-default", "v3"), block_size=4, num_blocks=32)


def test_cache_sizing(make_ckpt: Callable[..., Path], runner: ModelRunner) -> None:
    config = runner.config
    # 3 layers x 4 slots x (kv_lora_rank 32 + rope 8) x 4 bytes
    assert runner.kv_bytes_per_block() == 3 * 4 * 40 * 4
    assert runner.num_blocks == 32 and runner.block_size == 4
    assert config.vocab_size == 512 and config.eos_token_ids == (1,)
    sized = ModelRunner.from_pretrained(
        make_ckpt("v3-default", "v3"), block_size=16, kv_cache_memory_bytes=10 * 7680 + 5
    )
    assert sized.kv_bytes_per_block() == 7680 and sized.num_blocks == 10
    with pytest.raises(ValueError, match="less than one block"):
        ModelRunner.from_pretrained(make_ckpt("v3-default", "v3"), kv_cache_memory_bytes=100)


@pytest.mark.parametrize(
    ("chunk", "message"),
    [
        (SeqChunk([], 0, [0]), "token_ids is empty"),
        (SeqChunk([5, 512], 0, [0]), "token id 512 outside"),
        (SeqChunk([5, -1], 0, [0]), "token id -1 outside"),
        (SeqChunk([5] * 5, 0, [0]), "block_table has 1 blocks, 2 needed"),
        (SeqChunk([5], 4, [0]), "2 needed"),
        (SeqChunk([5], 0, [32]), "block id 32 outside"),
        (SeqChunk([5], -1, [0]), "start_pos"),
    ],
)
def test_bad_chunks_raise_clear_errors(runner: ModelRunner, chunk: SeqChunk, message: str) -> None:
    runner.debug_checks = True
    try:
        with pytest.raises(ValueError, match=message):
            runner.execute([SeqChunk([1, 2], 0, [3]), chunk])
    finally:
        runner.debug_checks = False


def test_hot_path_does_not_scan_chunks(
    runner: ModelRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without ``debug_checks`` no chunk is validated per step (the engine validated it)."""
    scanned: list[int] = []
    original = ModelRunner._validate

    def counting(self: ModelRunner, index: int, chunk: SeqChunk, end: int) -> None:
        scanned.append(index)
        original(self, index, chunk, end)

    monkeypatch.setattr(ModelRunner, "_validate", counting)
    runner.execute([SeqChunk([1, 2], 0, [3]), SeqChunk([4], 0, [5])])
    assert scanned == []
    runner.debug_checks = True
    try:
        runner.execute([SeqChunk([1, 2], 0, [3]), SeqChunk([4], 0, [5])])
    finally:
        runner.debug_checks = False
    assert scanned == [0, 1]


def test_empty_step_and_batch_invariance(runner: ModelRunner) -> None:
    assert runner.execute([]).shape == (0, 512)
    a = runner.execute([SeqChunk([10, 11, 12, 13, 14], 0, [0, 1])])
    b = runner.execute([SeqChunk([20, 21, 22], 0, [2])])
    both = runner.execute(
        [SeqChunk([10, 11, 12, 13, 14], 0, [4, 5]), SeqChunk([20, 21, 22], 0, [6])]
    )
    assert torch.allclose(both[0], a[0], atol=1e-5) and torch.allclose(both[1], b[0], atol=1e-5)
    # a decode step batched with others equals the decode step alone
    alone = runner.execute([SeqChunk([15], 5, [0, 1])])
    batched = runner.execute([SeqChunk([23], 3, [6]), SeqChunk([15], 5, [4, 5])])
    assert torch.allclose(batched[1], alone[0], atol=1e-5)


@pytest.mark.parametrize(
    "device", ["tpu", "not a device"] + ([] if torch.cuda.is_available() else ["cuda"])
)
def test_unusable_device_is_rejected(make_ckpt: Callable[..., Path], device: str) -> None:
    with pytest.raises(ValueError, match="device"):
        ModelRunner.from_pretrained(make_ckpt("v3-default", "v3"), device=device, num_blocks=4)
