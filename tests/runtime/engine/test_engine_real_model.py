"""The engine over the real tiny DeepSeek model: batching changes nothing.

64 concurrent requests of mixed lengths (greedy and seeded sampling) produce exactly
the tokens each produces alone, also under forced preemption (a tiny KV pool) and with
prefix-cache hits (shared prompt prefixes); afterwards every block is back in the pool.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from deepseek_runtime.backends.native import build_async_engine, build_engine
from deepseek_runtime.backends.options import NativeEngineOptions
from deepseek_runtime.checkpoint.make_tiny import make_tiny_checkpoint
from deepseek_runtime.engine import (
    EngineError,
    FinishReason,
    LLMEngine,
    SamplingParams,
)

pytestmark = [pytest.mark.unit, pytest.mark.usefixtures("one_torch_thread")]

# fp32 on the CPU wherever the tests run (the options' "auto" would pick a GPU)
CPU: dict[str, Any] = {"dtype": "float32", "device": "cpu"}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_checkpoint(tmp_path_factory.mktemp("tiny-v3"), "v3", seed=3)


def workload() -> tuple[list[list[int]], list[SamplingParams]]:
    rng = random.Random(1)
    shared = [[rng.randrange(2, 512) for _ in range(n)] for n in (20, 37)]
    prompts, params = [], []
    for i in range(64):
        head = shared[i % 2] if i % 3 else []
        prompts.append(head + [rng.randrange(2, 512) for _ in range(rng.randrange(1, 24))])
        max_tokens = rng.randrange(1, 10)
        if i % 4 == 0:
            params.append(
                SamplingParams(max_tokens=max_tokens, temperature=0.8, top_p=0.9, seed=100 + i)
            )
        else:
            params.append(SamplingParams(max_tokens=max_tokens, temperature=0))
    return prompts, params


def engine(model_dir: Path, **kw: object) -> LLMEngine:
    options = NativeEngineOptions(model_dir=model_dir, block_size=4, **CPU, **kw)  # type: ignore[arg-type]
    eng, _ = build_engine(options)
    return eng


@pytest.fixture(scope="module")
def alone(model_dir: Path) -> list[list[int]]:
    """Each request run by itself (batch of one, no prefix cache)."""
    eng = engine(model_dir, num_blocks=64, max_num_seqs=1, enable_prefix_caching=False)
    prompts, params = workload()
    return [eng.generate([p], sp)[0] for p, sp in zip(prompts, params, strict=True)]


def check_all_blocks_free(eng: LLMEngine) -> None:
    stats = eng.stats()
    assert stats.num_blocks_free == stats.num_blocks_total
    assert all(b.ref_cnt == 0 for b in eng.kv.pool.blocks)
    assert eng.kv.pool.invariant_violations() == []
    assert not eng.scheduler.requests


def test_64_concurrent_requests_with_prefix_hits(model_dir: Path, alone: list[list[int]]) -> None:
    eng = engine(model_dir, num_blocks=1024, max_num_seqs=64, max_num_batched_tokens=256)
    prompts, params = workload()
    assert eng.generate(prompts, params) == alone
    stats = eng.stats()
    assert stats.prefix_cache_hits > 0
    assert stats.num_preemptions == 0
    check_all_blocks_free(eng)


def test_64_concurrent_requests_with_forced_preemption(
    model_dir: Path, alone: list[list[int]]
) -> None:
    eng = engine(model_dir, num_blocks=40, max_num_seqs=64, max_num_batched_tokens=96)
    prompts, params = workload()
    assert eng.generate(prompts, params) == alone
    assert eng.stats().num_preemptions > 0
    check_all_blocks_free(eng)


def test_abort_bad_input_and_text(model_dir: Path) -> None:
    eng = engine(model_dir, num_blocks=64)
    eng.add_request("long", list(range(2, 40)), SamplingParams(max_tokens=200, temperature=0))
    eng.add_request("short", [5, 6, 7], SamplingParams(max_tokens=5, temperature=0))
    eng.step()
    assert eng.kv.holds("long")
    free_before = eng.stats().num_blocks_free
    eng.abort_request("long")
    assert eng.stats().num_blocks_free > free_before
    with pytest.raises(EngineError, match="empty"):
        eng.add_request("x", [], SamplingParams())
    with pytest.raises(EngineError, match="at most 255 prompt tokens"):
        eng.add_request("x", [3] * 256, SamplingParams())
    with pytest.raises(EngineError, match="token id 512 is outside"):
        eng.add_request("x", [3, 512], SamplingParams())
    outs = []
    while eng.has_unfinished_requests():
        outs += eng.step()
    assert outs[-1].request_id == "short"
    assert outs[-1].finish_reason is FinishReason.LENGTH
    assert "".join(o.text for o in outs) == eng.outputs._tokenizer.decode(  # type: ignore[union-attr]
        [t for o in outs for t in o.new_token_ids]
    )
    check_all_blocks_free(eng)


async def test_async_engine_from_model_dir_streams_text_and_stops(model_dir: Path) -> None:
    engine = build_async_engine(
        NativeEngineOptions(model_dir=model_dir, num_blocks=64, block_size=4, **CPU)
    )
    assert engine.tokenizer is not None
    assert engine.max_model_len == 256
    prompt = engine.tokenizer.encode("hello world").ids
    params = SamplingParams(max_tokens=16, temperature=0, ignore_eos=True)
    await engine.start()
    try:
        text, tokens = "", []
        async for out in engine.generate("a", prompt, params):
            text += out.text
            tokens += out.new_token_ids
        full = engine.tokenizer.decode(tokens)
        # Everything is streamed except a trailing incomplete character.
        assert text in (full, full.rstrip("\ufffd"))
        stop = text[4:7]
        assert len(stop) == 3
        stopped = ""
        final = None
        async for out in engine.generate(
            "b", prompt, SamplingParams(max_tokens=16, temperature=0, ignore_eos=True, stop=(stop,))
        ):
            stopped += out.text
            final = out
        assert final is not None and final.finish_reason is FinishReason.STOP
        assert stopped == text[: text.index(stop)]
    finally:
        await engine.shutdown()
