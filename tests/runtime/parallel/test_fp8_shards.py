"""FP8 block-scaled checkpoints (``make-tiny --fp8 --fp8-block 32``) split over 2 ranks:
kept in FP8 with sliced scales, or dequantized at load, each equals the single process."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

Run = Callable[[str, int], list[dict[str, Any]]]


@pytest.mark.parametrize(
    "check",
    [
        "mlp_fp8",
        "mla_fp8",
        "mla_fp8_dequantized",
        "moe_block_ep_fp8",
        "ep_routed_fp8",
        "ep_gathered_tokens_fp8",
        "tp_routed_fp8",
    ],
)
def test_fp8_shard_matches_single_process(run_suite: Run, check: str) -> None:
    errors = [r[check]["err"] for r in run_suite("fp8", 2)]
    assert max(errors) <= 1e-5, errors


@pytest.mark.parametrize("check", ["mlp_fp8", "mla_fp8", "ep_routed_fp8", "tp_routed_fp8"])
def test_fp8_resident_bytes_are_half(run_suite: Run, check: str) -> None:
    for report in run_suite("fp8", 2):
        entry = report[check]
        replicated = entry.get("replicated_bytes", 0)
        want = replicated + (entry["full_bytes"] - replicated) / 2
        assert entry["bytes"] == pytest.approx(want, rel=0.01), entry
