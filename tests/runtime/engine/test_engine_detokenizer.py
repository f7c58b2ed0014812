"""Incremental detokenization (multi-byte characters) and stop-string hold-back."""

from __future__ import annotations

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from deepseek_runtime.engine.detokenizer import IncrementalDetokenizer
from deepseek_runtime.engine.stop_strings import StopStringMatcher

pytestmark = pytest.mark.unit

TEXT = "héllo wörld — naïve café 日本語のテキスト 🙂🚀 smile ok"


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tok.train_from_iterator(["hello world smile ok"] * 20, trainer)
    return tok


def test_multibyte_characters_are_never_split(tokenizer: Tokenizer) -> None:
    ids = tokenizer.encode(TEXT).ids
    # Several characters span more than one token (byte-level pieces).
    assert "\ufffd" in "".join(tokenizer.decode([i]) for i in ids)
    prompt = tokenizer.encode("prompt: ").ids
    detok = IncrementalDetokenizer(tokenizer, prompt)
    deltas = [detok.add_tokens([i]) for i in ids]
    assert all("\ufffd" not in d for d in deltas)
    assert "".join(deltas) == TEXT


def test_long_streams_keep_a_short_window(tokenizer: Tokenizer) -> None:
    ids = tokenizer.encode(TEXT * 20).ids
    detok = IncrementalDetokenizer(tokenizer, [])
    assert "".join(detok.add_tokens([i]) for i in ids) == TEXT * 20


def test_stop_string_is_held_back_then_cut() -> None:
    m = StopStringMatcher(["###", "END"])
    assert m.add("answer: 42 #") == "answer: 42 "
    assert m.add("#") == ""
    assert m.add("#tail") == ""
    assert m.stopped and m.text == "answer: 42 "
    assert m.flush() == ""


def test_held_back_text_is_released_when_it_is_not_a_stop() -> None:
    m = StopStringMatcher(["###"])
    assert m.add("a ##") == "a "
    assert m.add(" b") == "## b"
    assert not m.stopped
    assert m.add("#") == ""
    assert m.flush() == "#"


def test_earliest_stop_wins_and_no_stops_passes_through() -> None:
    m = StopStringMatcher(["cd", "b"])
    assert m.add("abcd") == "a"
    assert m.stopped
    assert StopStringMatcher([]).add("xyz") == "xyz"


@pytest.mark.parametrize("cut", [1, 2, 3])
def test_flush_releases_a_character_cut_mid_bytes(tokenizer: Tokenizer, cut: int) -> None:
    """A request that ends inside a multi-byte character still returns every token's text."""
    ids = tokenizer.encode("ok 🙂").ids
    smile = "🙂".encode()
    # byte-level: the emoji is four one-byte tokens here (never merged by this tokenizer)
    assert tokenizer.decode(ids[-4:]) == "🙂"
    kept = ids[: len(ids) - 4 + cut]
    detok = IncrementalDetokenizer(tokenizer, [])
    streamed = "".join(detok.add_tokens([i]) for i in kept)
    assert streamed == "ok "
    tail = detok.flush()
    assert streamed + tail == tokenizer.decode(kept)
    assert tail == smile[:cut].decode("utf-8", errors="replace")
    assert tail.endswith("\ufffd")
    assert detok.flush() == ""


def test_flush_after_complete_text_is_empty(tokenizer: Tokenizer) -> None:
    detok = IncrementalDetokenizer(tokenizer, tokenizer.encode("x").ids)
    text = "".join(detok.add_tokens([i]) for i in tokenizer.encode(TEXT).ids)
    assert text == TEXT
    assert detok.flush() == ""
