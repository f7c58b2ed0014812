"""Block pool and KV cache manager: exact block ids, eviction order, prefix hashing."""

from __future__ import annotations

import pytest

from deepseek_runtime.kv import (
    ROOT_HASH,
    BlockPool,
    KVCacheManager,
    hash_block,
    hash_full_blocks,
)

pytestmark = pytest.mark.unit


def test_pool_allocates_in_id_order_and_frees_to_the_tail() -> None:
    pool = BlockPool(11)
    a = pool.allocate(3)
    b = pool.allocate(2)
    assert [x.block_id for x in a] == [0, 1, 2]
    assert [x.block_id for x in b] == [3, 4]
    assert pool.num_free_blocks == 6
    pool.free(reversed(a))
    assert pool.free_block_ids() == [5, 6, 7, 8, 9, 10, 2, 1, 0]
    c = pool.allocate(7)
    assert [x.block_id for x in c] == [5, 6, 7, 8, 9, 10, 2]
    assert pool.usage() == pytest.approx(9 / 11)


def test_pool_refuses_too_many_and_double_free() -> None:
    pool = BlockPool(11)
    blocks = pool.allocate(11)
    with pytest.raises(ValueError, match="only 0 free"):
        pool.allocate(1)
    pool.free(blocks[:1])
    with pytest.raises(ValueError, match="double free of block 0"):
        pool.free(blocks[:1])


def test_cached_free_blocks_are_evicted_in_lru_order() -> None:
    pool = BlockPool(11)
    blocks = pool.allocate(11)
    for i, blk in enumerate(blocks[:4]):
        pool.cache(blk, bytes([i]) * 16)
    pool.free([blocks[2], blocks[0], blocks[3], blocks[1]])
    assert pool.free_block_ids() == [2, 0, 3, 1]
    # A hit on a free cached block takes it out of the free queue.
    hit = pool.lookup(bytes([0]) * 16)
    assert hit is blocks[0]
    pool.touch([hit])
    assert pool.free_block_ids() == [2, 3, 1]
    new = pool.allocate(2)
    assert [x.block_id for x in new] == [2, 3]
    assert pool.lookup(bytes([2]) * 16) is None  # evicted
    assert pool.lookup(bytes([3]) * 16) is None
    assert pool.lookup(bytes([1]) * 16) is blocks[1]  # still cached, still free
    assert pool.num_evictions == 2
    assert pool.invariant_violations() == []
    blocks[5].ref_cnt = 0  # corrupt it: in use, yet unreferenced
    assert pool.invariant_violations() == ["block 5: ref_cnt 0 but not in the free queue"]


def test_hash_chaining_depends_on_the_whole_prefix() -> None:
    a = hash_full_blocks([1, 2, 3, 4, 5, 6, 7, 8, 9], 4)
    b = hash_full_blocks([0, 2, 3, 4, 5, 6, 7, 8], 4)
    assert len(a) == 2 and len(b) == 2
    assert a[0] == hash_block(ROOT_HASH, [1, 2, 3, 4])
    assert a[1] == hash_block(a[0], [5, 6, 7, 8])
    assert a[1] != b[1]  # same second block, different parent
    # Extending a chain gives the same hashes as hashing from the start.
    assert hash_full_blocks([1, 2, 3, 4, 5, 6, 7, 8], 4, start_block=1, parent=a[0]) == a[1:]


def test_manager_allocates_on_demand_and_returns_none_when_full() -> None:
    kv = KVCacheManager(11, 4)
    assert kv.allocate_slots("a", 9) == [0, 1, 2]
    assert kv.allocate_slots("a", 10) == [0, 1, 2]
    assert kv.allocate_slots("a", 13) == [0, 1, 2, 3]
    assert kv.allocate_slots("b", 28) == [4, 5, 6, 7, 8, 9, 10]
    assert kv.allocate_slots("c", 1) is None
    assert kv.allocate_slots("a", 17) is None
    assert kv.block_ids("a") == [0, 1, 2, 3]  # unchanged after a refusal
    kv.free("b")
    assert kv.pool.free_block_ids() == [10, 9, 8, 7, 6, 5, 4]
    assert kv.allocate_slots("c", 5) == [10, 9]


def test_prefix_cache_hits_share_blocks_and_count_tokens() -> None:
    kv = KVCacheManager(11, 4)
    prompt = list(range(100, 110))  # 10 tokens: 2 full blocks + 2
    assert kv.find_cached_prefix("a", prompt).num_tokens == 0
    kv.allocate_slots("a", 10, kv.find_cached_prefix("a", prompt))
    kv.record_computed("a", prompt, 10)
    assert kv.pool.num_cached_blocks == 2
    hit = kv.find_cached_prefix("b", [*prompt[:8], 7, 7, 7])
    assert hit.num_tokens == 8
    assert [b.block_id for b in hit.blocks] == [0, 1]
    assert kv.allocate_slots("b", 11, hit) == [0, 1, 3]
    assert kv.pool.blocks[0].ref_cnt == 2
    assert (kv.prefix_cache_queries, kv.prefix_cache_hits) == (10 + 11, 8)
    kv.free("a")
    kv.free("b")
    assert kv.num_free_blocks == 11
    # Freed cached blocks still hit, and a whole-prompt hit keeps the last token.
    again = kv.find_cached_prefix("c", prompt[:8])
    assert again.num_tokens == 4
    assert kv.find_cached_prefix("d", prompt[:9]).num_tokens == 8


def test_different_first_block_misses_even_with_equal_second_block() -> None:
    kv = KVCacheManager(11, 4)
    prompt = [1, 2, 3, 4, 5, 6, 7, 8, 9]
    kv.allocate_slots("a", 9)
    kv.record_computed("a", prompt, 9)
    assert kv.find_cached_prefix("b", [0, 2, 3, 4, 5, 6, 7, 8, 9]).num_tokens == 0


def test_waste_counts_empty_slots_of_allocated_blocks() -> None:
    kv = KVCacheManager(11, 4)
    kv.allocate_slots("a", 5)
    kv.record_computed("a", [1, 2, 3, 4, 5], 5)
    kv.allocate_slots("b", 4)
    kv.record_computed("b", [1, 2, 3, 4], 4)
    assert kv.allocated_slots() == 12
    assert kv.wasted_slots() == 3
    assert kv.waste_fraction() == pytest.approx(0.25)


def test_prefix_caching_disabled_never_hits() -> None:
    kv = KVCacheManager(11, 4, enable_prefix_caching=False)
    kv.allocate_slots("a", 9)
    kv.record_computed("a", list(range(9)), 9)
    assert kv.find_cached_prefix("b", list(range(9))).num_tokens == 0
