"""Scheduler and LLMEngine over a fake runner: batching, chunked prefill, preemption,
prefix caching, abort and bad input, block tables shared across steps."""

from __future__ import annotations

import random
from collections.abc import Sequence

import pytest
import torch
from engine_fakes import FakeRunner

from deepseek_runtime.engine import (
    EngineConfig,
    EngineError,
    FinishReason,
    LLMEngine,
    SamplingParams,
)
from deepseek_runtime.engine.step_io import ScheduledChunk

pytestmark = pytest.mark.unit

GREEDY = SamplingParams(max_tokens=8, temperature=0)


def make_engine(runner: FakeRunner, **kw: object) -> LLMEngine:
    cfg: dict[str, object] = {"max_model_len": 64, "max_num_seqs": 8, "max_num_batched_tokens": 16}
    cfg.update(kw)
    return LLMEngine(runner, EngineConfig(**cfg), eos_token_ids=[0])  # type: ignore[arg-type]


def alone(prompt: list[int], params: SamplingParams) -> list[int]:
    return make_engine(FakeRunner(num_blocks=64)).generate([prompt], params)[0]


def test_budget_and_chunked_prefill() -> None:
    runner = FakeRunner()
    engine = make_engine(runner, max_num_batched_tokens=6, max_num_seqs=2)
    engine.add_request("a", list(range(1, 11)), GREEDY)
    engine.add_request("b", [5, 6, 7], GREEDY)
    engine.add_request("c", [8, 9], GREEDY)
    engine.step()
    first = runner.calls[-1]
    assert [(c.request_id, c.start_pos, len(c.token_ids), c.sample) for c in first] == [
        ("a", 0, 6, False)
    ]
    engine.step()  # a finishes its prompt (4), b gets 2 of 3
    assert [(c.request_id, c.start_pos, len(c.token_ids)) for c in runner.calls[-1]] == [
        ("a", 6, 4),
        ("b", 0, 2),
    ]
    engine.step()  # a decodes 1, b finishes prefill; c waits for a seat
    assert [(c.request_id, len(c.token_ids)) for c in runner.calls[-1]] == [("a", 1), ("b", 1)]
    assert engine.stats().num_waiting == 1


def test_batched_equals_alone_with_prefix_hits_and_preemption() -> None:
    rng = random.Random(0)
    shared = [rng.randrange(1, 50) for _ in range(12)]
    prompts = []
    for i in range(24):
        tail = [rng.randrange(1, 50) for _ in range(rng.randrange(1, 15))]
        prompts.append((shared if i % 2 else []) + tail)
    params = [
        SamplingParams(max_tokens=rng.randrange(1, 12), temperature=0, ignore_eos=True)
        if i % 3
        else SamplingParams(max_tokens=10, temperature=0.9, top_k=20, seed=i, ignore_eos=True)
        for i in range(len(prompts))
    ]
    expected = [alone(p, sp) for p, sp in zip(prompts, params, strict=True)]
    runner = FakeRunner(num_blocks=24)
    engine = make_engine(runner, max_num_seqs=16, max_num_batched_tokens=40)
    got = engine.generate(prompts, params)
    assert got == expected
    stats = engine.stats()
    assert stats.num_preemptions > 0
    assert stats.prefix_cache_hits > 0
    assert stats.num_blocks_free == stats.num_blocks_total
    assert engine.kv.pool.free_block_ids() and all(b.ref_cnt == 0 for b in engine.kv.pool.blocks)
    assert engine.kv.pool.invariant_violations() == []


def test_stop_conditions_and_length() -> None:
    runner = FakeRunner()
    engine = make_engine(runner)
    toks = alone([3, 4, 5], SamplingParams(max_tokens=6, temperature=0, ignore_eos=True))
    stop_at = toks[2]
    engine.add_request(
        "s",
        [3, 4, 5],
        SamplingParams(max_tokens=6, temperature=0, stop_token_ids=(stop_at,), ignore_eos=True),
    )
    outs = []
    while engine.has_unfinished_requests():
        outs += engine.step()
    assert outs[-1].finish_reason is FinishReason.STOP
    assert [o.new_token_ids[0] for o in outs] == toks[: toks.index(stop_at) + 1]
    # max_model_len caps the total length.
    engine.add_request(
        "m",
        [i % 49 + 1 for i in range(59)],
        SamplingParams(max_tokens=50, temperature=0, ignore_eos=True),
    )
    outs = []
    while engine.has_unfinished_requests():
        outs += engine.step()
    assert outs[-1].finish_reason is FinishReason.LENGTH
    assert outs[-1].completion_tokens == 5


def test_abort_frees_blocks_at_once() -> None:
    engine = make_engine(FakeRunner())
    engine.add_request("a", list(range(1, 20)), GREEDY)
    engine.add_request("b", [1, 2], GREEDY)
    engine.step()
    used = engine.stats().num_blocks_total - engine.stats().num_blocks_free
    assert used > 0
    out = engine.abort_request("a")
    assert out is not None and out.finish_reason is FinishReason.ABORT and out.finished
    assert not engine.kv.holds("a")
    assert engine.abort_request("a") is None
    assert engine.abort_request("nope") is None
    while engine.has_unfinished_requests():
        engine.step()
    assert engine.stats().num_blocks_free == engine.stats().num_blocks_total


@pytest.mark.parametrize(
    ("prompt", "message"),
    [
        ([], "prompt is empty"),
        (list(range(1, 65)), "at most 63 prompt tokens"),
        ([1, 50], "token id 50 is outside the vocabulary"),
        ([-1], "token id -1 is outside"),
    ],
)
def test_bad_input_is_refused_and_others_keep_running(prompt: list[int], message: str) -> None:
    engine = make_engine(FakeRunner())
    engine.add_request("ok", [1, 2, 3], GREEDY)
    engine.step()
    with pytest.raises(EngineError, match=message):
        engine.add_request("bad", prompt, GREEDY)
    with pytest.raises(EngineError, match="already in use"):
        engine.add_request("ok", [1], GREEDY)
    outs = []
    while engine.has_unfinished_requests():
        outs += engine.step()
    assert outs[-1].request_id == "ok" and outs[-1].finished


def test_model_failure_fails_the_batch_and_engine_keeps_serving() -> None:
    runner = FakeRunner()
    engine = make_engine(runner)
    engine.add_request("a", [1, 2, 3], GREEDY)
    runner.fail_next = True
    outs = engine.step()
    assert outs[0].finish_reason is FinishReason.ERROR and "boom" in (outs[0].error or "")
    assert engine.stats().num_blocks_free == engine.stats().num_blocks_total
    assert engine.generate([[1, 2, 3]], GREEDY)[0] == alone([1, 2, 3], GREEDY)


class SnapshotRunner(FakeRunner):
    """Remembers what each chunk's block table held while ``execute`` ran."""

    def __init__(self, **kw: int) -> None:
        super().__init__(**kw)
        self.seen: list[tuple[ScheduledChunk, list[int]]] = []

    def execute(self, chunks: Sequence[ScheduledChunk]) -> torch.Tensor:
        self.seen += [(c, list(c.block_table)) for c in chunks]
        return super().execute(chunks)


def test_chunk_block_tables_are_shared_and_stay_valid_after_appends_and_preemption() -> None:
    runner = SnapshotRunner(num_blocks=16)
    engine = make_engine(runner, max_num_seqs=8, max_num_batched_tokens=24)
    rng = random.Random(1)
    prompts = [[rng.randrange(1, 50) for _ in range(rng.randrange(3, 12))] for _ in range(8)]
    params = SamplingParams(max_tokens=12, temperature=0, ignore_eos=True)
    assert engine.generate(prompts, params) == [alone(p, params) for p in prompts]
    assert engine.stats().num_preemptions > 0
    bs = runner.block_size
    tables: dict[str, list[list[int]]] = {}
    for chunk, at_execute in runner.seen:
        needed = -(-(chunk.start_pos + len(chunk.token_ids)) // bs)
        # What the chunk carries still covers it with the ids the runner used.
        assert chunk.block_table[:needed] == at_execute[:needed]
        assert len(at_execute) >= needed
        lists = tables.setdefault(chunk.request_id, [])
        if not any(t is chunk.block_table for t in lists):
            lists.append(chunk.block_table)
    # One list per admission (the first and one after each preemption), not one per step.
    admissions = len(prompts) + engine.stats().num_preemptions
    assert sum(len(v) for v in tables.values()) == admissions
    assert len(runner.seen) > 4 * admissions
