"""KV manager records: each block hashed once per request (also when the real scheduler
drives it through waiting and preemption), hash chains kept across preemption, block
tables handed out without a copy and never changed under a reader."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from deepseek_runtime.engine.api import SamplingParams
from deepseek_runtime.engine.request import Request, RequestStatus
from deepseek_runtime.engine.scheduler import Scheduler
from deepseek_runtime.kv import BlockHash, KVCacheManager, hash_block, hash_full_blocks

pytestmark = pytest.mark.unit


class CountingHasher:
    """``hash_block`` that counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, parent: BlockHash, token_ids: Sequence[int]) -> BlockHash:
        self.calls += 1
        return hash_block(parent, token_ids)


def test_prompt_blocked_on_memory_is_hashed_once() -> None:
    hasher = CountingHasher()
    kv = KVCacheManager(5, 4, hash_fn=hasher)
    a = list(range(100, 112))  # 3 full blocks
    kv.allocate_slots("a", 12)
    kv.record_computed("a", a, 12)
    assert hasher.calls == 3
    b = [*a[:8], *range(200, 209)]  # 17 tokens: 4 full blocks, the first 2 shared with a
    for _ in range(50):  # b waits: it needs 3 new blocks, 2 are free
        hit = kv.find_cached_prefix("b", b)
        assert [blk.block_id for blk in hit.blocks] == [0, 1]
        assert kv.allocate_slots("b", 17, hit) is None
    assert hasher.calls == 3 + 4
    kv.free("a")
    hit = kv.find_cached_prefix("b", b)
    assert kv.allocate_slots("b", 17, hit) == [0, 1, 3, 4, 2]
    kv.record_computed("b", b, 17)
    assert hasher.calls == 3 + 4  # b's full blocks were hashed while it waited
    chain = hash_full_blocks(b, 4)
    assert [kv.pool.lookup(h) for h in chain] == [kv.pool.blocks[i] for i in (0, 1, 3, 4)]
    assert kv.pool.invariant_violations() == []


def test_preemption_keeps_the_hash_chain_and_free_forgets_it() -> None:
    hasher = CountingHasher()
    kv = KVCacheManager(11, 4, hash_fn=hasher)
    tokens = list(range(1, 11))
    kv.allocate_slots("a", 10, kv.find_cached_prefix("a", tokens))
    kv.record_computed("a", tokens, 10)
    assert hasher.calls == 2
    kv.release_blocks("a")  # preempted
    assert not kv.holds("a") and kv.num_free_blocks == 11
    assert kv.wasted_slots() == 0
    again = kv.find_cached_prefix("a", tokens)
    assert (again.num_tokens, hasher.calls) == (8, 2)
    assert kv.allocate_slots("a", 10, again) == [0, 1, 3]
    kv.record_computed("a", tokens, 10)
    assert hasher.calls == 2
    kv.free("a")
    kv.find_cached_prefix("a", tokens)  # a new request under the same id
    assert hasher.calls == 4


def test_block_table_is_appended_in_place_and_replaced_on_release() -> None:
    kv = KVCacheManager(11, 4)
    table = kv.allocate_slots("a", 5)
    assert table == [0, 1]
    assert kv.allocate_slots("a", 9) is table  # no copy per step: the same list grows
    assert table == [0, 1, 2]
    kv.allocate_slots("b", 8)
    kv.release_blocks("a")
    assert table == [0, 1, 2]  # a reader of the old table sees it unchanged
    new = kv.allocate_slots("a", 4)
    assert new is not None and new is not table
    assert (new, table) == ([5], [0, 1, 2])
    kv.free("a")
    assert new == [5] and kv.block_ids("a") == []


def test_request_waiting_for_memory_is_not_rehashed_each_step() -> None:
    hasher = CountingHasher()
    kv = KVCacheManager(4, 8, hash_fn=hasher)
    sched = Scheduler(kv, max_num_seqs=4, max_num_batched_tokens=64)
    params = SamplingParams(max_tokens=14, temperature=0, ignore_eos=True)
    a = Request("a", list(range(1, 10)), params, max_model_len=32)  # grows to 23 tokens
    b = Request("b", [*range(1, 9), *range(20, 37)], params, max_model_len=32)  # 25 tokens
    sched.add(a)
    sched.add(b)
    steps_blocked = 0
    while sched.has_unfinished():
        out = sched.schedule()
        sched.update_from_output(out, {c.request_id: 7 for c in out.chunks if c.sample})
        if b.status is RequestStatus.WAITING and a.status is RequestStatus.RUNNING:
            steps_blocked += 1
            # b's 3 lookable blocks once, a's computed full blocks once; not per step.
            assert hasher.calls == 3 + a.num_computed_tokens // 8
    assert steps_blocked == 13
    assert (a.num_tokens, b.num_tokens) == (23, 32)
    assert kv.num_free_blocks == 4 and kv.pool.invariant_violations() == []


def test_preempted_request_is_not_rehashed_when_readmitted() -> None:
    hasher = CountingHasher()
    kv = KVCacheManager(6, 4, hash_fn=hasher)
    sched = Scheduler(kv, max_num_seqs=4, max_num_batched_tokens=64)
    params = SamplingParams(max_tokens=10, temperature=0, ignore_eos=True)
    requests = [Request(rid, [i + 1] * 9, params, max_model_len=24) for i, rid in enumerate("ab")]
    for request in requests:
        sched.add(request)
    while sched.has_unfinished():
        out = sched.schedule()
        sched.update_from_output(out, {c.request_id: 7 for c in out.chunks if c.sample})
    assert sched.num_preemptions > 0
    # Each request's full blocks hashed once; its last token was never computed.
    assert hasher.calls == sum((r.num_tokens - 1) // 4 for r in requests) == 8
