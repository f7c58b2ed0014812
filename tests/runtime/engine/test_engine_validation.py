"""A request is validated once, where it enters the engine; the model step trusts it.

``LLMEngine.validate`` is the one check of token ids and lengths (``NativeAsyncEngine``
runs it once per request, not again when it queues the request between steps). The
runner's per-chunk scan runs only with ``debug_checks`` (``--debug-checks``): the
scheduler's chunks come from validated requests and block ids the KV manager handed out.
"""

from __future__ import annotations

from pathlib import Path
from typing import cast

import pytest
from engine_fakes import FakeRunner

from deepseek_runtime.backends import NativeEngineOptions
from deepseek_runtime.backends.native import build_engine
from deepseek_runtime.checkpoint.make_tiny import make_tiny_checkpoint
from deepseek_runtime.engine import (
    EngineConfig,
    EngineError,
    LLMEngine,
    NativeAsyncEngine,
    SamplingParams,
)
from deepseek_runtime.engine.step_io import ScheduledChunk
from deepseek_runtime.model.runner import ModelRunner

pytestmark = pytest.mark.unit

GREEDY = SamplingParams(max_tokens=4, temperature=0, ignore_eos=True)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_checkpoint(tmp_path_factory.mktemp("tiny-v3"), "v3", seed=5)


def build(model_dir: Path, *, debug_checks: bool = False) -> LLMEngine:
    options = NativeEngineOptions(
        model_dir=model_dir,
        dtype="float32",
        device="cpu",
        block_size=4,
        num_blocks=32,
        debug_checks=debug_checks,
    )
    return build_engine(options)[0]


def test_engine_rejects_bad_token_ids_when_a_request_is_added(model_dir: Path) -> None:
    engine = build(model_dir)
    vocab = engine.vocab_size
    with pytest.raises(EngineError, match=f"token id {vocab} is outside the vocabulary"):
        engine.add_request("bad", [1, vocab], GREEDY)
    with pytest.raises(EngineError, match="token id -1 is outside the vocabulary"):
        engine.add_request("neg", [-1, 2], GREEDY)
    assert not engine.has_unfinished_requests()
    assert len(engine.generate([[1, 2, 3]], GREEDY)[0]) == GREEDY.max_tokens


def test_runner_scans_chunks_only_with_debug_checks(model_dir: Path) -> None:
    """Block id -1 is out of range; the hot path does not scan for it (only the cache
    write's own bounds check in ``index_copy_`` trips, naming no block), the debug switch
    names it before any kernel runs."""
    bad = [ScheduledChunk("r", [1, 2], 0, [-1], True)]
    fast = cast(ModelRunner, build(model_dir).runner)
    assert fast.debug_checks is False
    with pytest.raises(IndexError, match="index_copy_"):
        fast.execute(bad)
    checked = cast(ModelRunner, build(model_dir, debug_checks=True).runner)
    assert checked.debug_checks is True
    with pytest.raises(ValueError, match="block id -1 outside"):
        checked.execute(bad)


async def test_async_engine_validates_each_request_once(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []
    validate = LLMEngine.validate

    def counting(
        self: LLMEngine, request_id: str, prompt: list[int], params: SamplingParams
    ) -> None:
        seen.append(request_id)
        validate(self, request_id, prompt, params)

    monkeypatch.setattr(LLMEngine, "validate", counting)
    engine = NativeAsyncEngine(LLMEngine(FakeRunner(), EngineConfig(max_model_len=64)))
    await engine.start()
    try:
        outs = [o async for o in engine.generate("a", [1, 2, 3], GREEDY)]
        with pytest.raises(EngineError, match="outside the vocabulary"):
            engine.generate("b", [1, 10_000], GREEDY)
    finally:
        await engine.shutdown()
    assert outs[-1].finished and outs[-1].completion_tokens == GREEDY.max_tokens
    assert seen == ["a", "b"]
