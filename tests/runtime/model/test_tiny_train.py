"""make-tiny's training: prose extraction, a short real training run, and its cache."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from deepseek_runtime.checkpoint.make_tiny import make_tiny_checkpoint
from deepseek_runtime.checkpoint.tiny_train import (
    CARD,
    WEIGHTS,
    chat_samples,
    prose,
    train_checkpoint,
)


@pytest.mark.unit
def test_prose_keeps_running_text_only() -> None:
    page = (
        "# Title\n\nThe [operator](operator.md) plans `TP` and **PP**.\n\n"
        "| a | b |\n|---|---|\n\n```sh\nmake test\n```\n\n- one item\n1. two\n"
    )
    assert prose(page).split() == [
        "Title",
        "The",
        "operator",
        "plans",
        "TP",
        "and",
        "PP.",
        "one",
        "item",
        "two",
    ]


@pytest.mark.slow
def test_training_lowers_the_loss_and_is_cached(tmp_path: Path) -> None:
    model = make_tiny_checkpoint(tmp_path / "a", "v3", seed=0)
    before = {n: t.clone() for n, t in load_file(str(model / WEIGHTS)).items()}  # not mmap
    report = train_checkpoint(model, "v3", seconds=3, cache=tmp_path / "cache")
    after = load_file(str(model / WEIGHTS))
    assert report.steps > 5
    assert report.loss_last < report.loss_first
    assert set(after) == set(before)
    assert all(after[n].shape == before[n].shape for n in before)
    assert not torch.equal(after["model.embed_tokens.weight"], before["model.embed_tokens.weight"])
    assert "not DeepSeek" in (model / CARD).read_text()

    again = make_tiny_checkpoint(tmp_path / "b", "v3", seed=0)
    started = time.monotonic()
    cached = train_checkpoint(again, "v3", seconds=3, cache=tmp_path / "cache")
    assert time.monotonic() - started < 2.0  # copied, not trained
    assert cached == report
    reloaded = load_file(str(again / WEIGHTS))
    assert all(torch.equal(reloaded[n], after[n]) for n in after)


@pytest.mark.unit
def test_chat_samples_ask_about_each_section() -> None:
    page = "# Engine\n\nIt batches requests and pages the KV cache.\n\n## Server\n\ntoo short\n"
    page += "\nIt streams tokens to every client that asks for them.\n"
    samples = chat_samples(page, "page")
    assert len(samples) == 2
    assert samples[0].endswith(
        "Tell me about Engine.<｜Assistant｜>"
        "It batches requests and pages the KV cache.<｜end▁of▁sentence｜>"
    )
    assert "Tell me about Server." in samples[1]
