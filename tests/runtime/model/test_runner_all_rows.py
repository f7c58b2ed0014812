"""``ModelRunner.execute_all_rows``: every row of the chosen chunks, same last rows as
``execute``, and each row equal to the last row of a prefix computed on its own."""

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


def test_all_rows_match_execute_and_prefixes(runner: ModelRunner) -> None:
    a = SeqChunk([0, 7, 9, 11, 13, 15], 0, [0, 1])
    b = SeqChunk([0, 20, 21], 0, [2])
    last_only = runner.execute([a, b])
    last, rows = runner.execute_all_rows([a, b], [0])
    torch.testing.assert_close(last, last_only, rtol=1e-5, atol=1e-5)
    assert len(rows) == 1 and rows[0].shape == (6, runner.vocab_size)
    torch.testing.assert_close(rows[0][-1], last[0], rtol=1e-5, atol=1e-5)
    for n in range(1, 6):  # row n-1 predicts token n: the last row of the n-token prefix
        alone = runner.execute([SeqChunk(a.token_ids[:n], 0, [3, 4])])
        torch.testing.assert_close(rows[0][n - 1], alone[0], rtol=1e-4, atol=1e-4)
