"""NativeAsyncEngine over a fake runner: streaming, abort, queue limit, bad input."""

from __future__ import annotations

import asyncio

import pytest
from engine_fakes import FakeRunner

from deepseek_runtime.engine import (
    EngineConfig,
    EngineError,
    FinishReason,
    LLMEngine,
    NativeAsyncEngine,
    QueueFullError,
    SamplingParams,
)

pytestmark = pytest.mark.unit

GREEDY = SamplingParams(max_tokens=6, temperature=0, ignore_eos=True)


def make(**kw: object) -> NativeAsyncEngine:
    cfg: dict[str, object] = {"max_model_len": 64, "max_num_seqs": 4, "max_num_batched_tokens": 16}
    cfg.update(kw)
    return NativeAsyncEngine(LLMEngine(FakeRunner(), EngineConfig(**cfg)))  # type: ignore[arg-type]


async def collect(engine: NativeAsyncEngine, rid: str, prompt: list[int]) -> list[int]:
    tokens: list[int] = []
    async for out in engine.generate(rid, prompt, GREEDY):
        tokens += out.new_token_ids
        if out.finished:
            assert out.finish_reason is FinishReason.LENGTH
    return tokens


async def test_concurrent_streams_match_sync_results() -> None:
    prompts = [[i + 1, i + 2, i + 3] for i in range(10)]
    expected = LLMEngine(FakeRunner(), EngineConfig(max_model_len=64)).generate(prompts, GREEDY)
    engine = make()
    await engine.start()
    try:
        got = await asyncio.gather(*(collect(engine, f"r{i}", p) for i, p in enumerate(prompts)))
    finally:
        await engine.shutdown()
    assert got == expected
    stats = engine.stats()
    assert stats.num_blocks_free == stats.num_blocks_total
    assert stats.num_running == stats.num_waiting == 0


async def test_abort_and_cancel_free_blocks() -> None:
    engine = make()
    await engine.start()
    try:
        stream = engine.generate("a", [1, 2, 3], SamplingParams(max_tokens=50, temperature=0))
        first = await anext(stream)
        assert first.new_token_ids
        await engine.abort("a")
        rest = [o async for o in stream]
        assert rest[-1].finish_reason is FinishReason.ABORT
        # Closing a stream early aborts it too.
        stream2 = engine.generate("b", [1, 2, 3], SamplingParams(max_tokens=50, temperature=0))
        await anext(stream2)
        await stream2.aclose()
        await asyncio.sleep(0.05)
        stats = engine.stats()
        assert stats.num_blocks_free == stats.num_blocks_total
        assert stats.num_running == 0
        await engine.abort("unknown")  # no-op
    finally:
        await engine.shutdown()


async def test_queue_full_and_bad_input_leave_others_running() -> None:
    engine = make(max_waiting=2, max_num_seqs=1)
    await engine.start()
    try:
        ok = [engine.generate(f"r{i}", [1, 2], GREEDY) for i in range(2)]
        with pytest.raises(QueueFullError, match="max_waiting=2"):
            engine.generate("r2", [1, 2], GREEDY)
        with pytest.raises(EngineError, match="prompt is empty"):
            engine.generate("bad", [], GREEDY)
        with pytest.raises(EngineError, match="outside the vocabulary"):
            engine.generate("bad", [10_000], GREEDY)
        for stream in ok:
            outs = [o async for o in stream]
            assert outs[-1].finished and outs[-1].completion_tokens == 6
    finally:
        await engine.shutdown()
    assert issubclass(QueueFullError, EngineError)


async def test_many_streams_with_aborts_and_cancelled_consumers() -> None:
    prompts = [[(i * 7) % 49 + 1, i % 13 + 1, 3] for i in range(40)]
    params = SamplingParams(max_tokens=12, temperature=0, ignore_eos=True)
    expected = LLMEngine(FakeRunner(), EngineConfig(max_model_len=64)).generate(prompts, params)
    engine = make(max_num_seqs=8)
    await engine.start()

    async def consume(i: int) -> list[int] | None:
        tokens: list[int] = []
        async for out in engine.generate(f"r{i}", prompts[i], params):
            tokens += out.new_token_ids
            if i % 5 == 0 and len(tokens) >= 2:
                await engine.abort(f"r{i}")
            if out.finished:
                return tokens if out.finish_reason is FinishReason.LENGTH else None
        return None

    try:
        tasks = [asyncio.create_task(consume(i)) for i in range(40)]
        await asyncio.sleep(0)
        for i in range(3, 40, 10):
            tasks[i].cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.sleep(0.05)
        stats = engine.stats()
        assert stats.num_blocks_free == stats.num_blocks_total
        assert stats.num_running == stats.num_waiting == 0
    finally:
        await engine.shutdown()
    for i, got in enumerate(results):
        if i % 10 == 3:
            assert isinstance(got, asyncio.CancelledError)
        elif i % 5 == 0:
            assert got is None
        else:
            assert got == expected[i]
    assert engine.engine.kv.pool.invariant_violations() == []


async def test_outputs_report_queue_time_once_scheduled() -> None:
    """Every delta carries the request's queue time (arrival to first scheduling)."""
    engine = make(max_num_seqs=1)
    await engine.start()
    try:
        outs = [o async for o in engine.generate("q", [1, 2, 3], GREEDY)]
    finally:
        await engine.shutdown()
    assert outs and all(o.queue_time is not None and o.queue_time >= 0 for o in outs)
    assert len({o.queue_time for o in outs}) == 1


async def test_coalesced_deltas_keep_queue_time() -> None:
    """A consumer that falls behind gets merged deltas; the queue time survives merging
    (the server's queue-time histogram records it from the final delta)."""
    engine = make(max_num_seqs=1)
    await engine.start()
    try:
        stream = engine.generate("slow", [1, 2, 3], GREEDY)
        for _ in range(200):  # let every step finish before reading anything
            if not engine.engine.has_unfinished_requests() and engine.stats().num_waiting == 0:
                break
            await asyncio.sleep(0.01)
        outs = [o async for o in stream]
    finally:
        await engine.shutdown()
    assert len(outs) < GREEDY.max_tokens, "the deltas were not coalesced"
    assert sum(len(o.new_token_ids) for o in outs) == GREEDY.max_tokens
    assert outs[-1].finished
    assert all(o.queue_time is not None and o.queue_time >= 0 for o in outs)
