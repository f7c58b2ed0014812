"""Pipeline stages over gloo: activations cross stages intact, and staged layers (alone
and with TP=2 inside each stage) give the single process's hidden states and logits."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

Run = Callable[[str, int], list[dict[str, Any]]]


def test_send_recv_round_trips_every_dtype_and_shape(run_suite: Run) -> None:
    first, last = run_suite("pp", 2)
    assert first["send_recv"]["sent"] == 5
    assert last["send_recv"] == {"err": 0.0, "received": 5}


def test_two_stages_equal_one_process(run_suite: Run) -> None:
    reports = run_suite("pp", 2)
    assert [r["pp_ranks"] for r in reports] == [[0, 1], [0, 1]]
    assert [r["stage"]["layers"] for r in reports] == [[0, 1], [2]]  # 3 layers
    assert max(r["stage"]["err"] for r in reports) <= 1e-5


def test_tp2_by_pp2_groups_and_numerics(run_suite: Run) -> None:
    reports = run_suite("tp2pp2", 4)
    assert [r["tp_ranks"] for r in reports] == [[0, 1], [0, 1], [2, 3], [2, 3]]
    assert [r["pp_ranks"] for r in reports] == [[0, 2], [1, 3], [0, 2], [1, 3]]
    assert [r["ep_ranks"] for r in reports] == [r["tp_ranks"] for r in reports]
    assert [r["stage"]["layers"] for r in reports] == [[0, 1], [0, 1], [2], [2]]
    assert [r["send_recv"]["err"] for r in reports] == [0.0] * 4
    assert max(r["stage"]["err"] for r in reports) <= 1e-5
