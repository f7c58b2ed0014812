"""The pool of physical KV blocks: free list, reference counts, prefix-cache index.

Owned by :class:`deepseek_runtime.kv.manager.KVCacheManager`; nothing else mutates it.
Pure Python: it hands out block ids, never tensors (the model runner owns the memory).

Invariants::

    block.ref_cnt > 0   <=>  block is in some sequence's block table, NOT in the free queue
    block.ref_cnt == 0  <=>  block is in the free queue (exactly once)

    free queue (LRU order, evict from the left):
      left  [ b7 (cached h3) | b2 | b9 (cached h1) | ... ]  right
             ^ allocate pops here; a cached block popped here is evicted
               (its hash leaves the index)          freed blocks are appended here ^

    cached index: hash -> block. A cached block may be in use (ref_cnt > 0, shared by
    several sequences) or free (ref_cnt == 0, reusable on a hit until evicted).
    A cache hit on a free block takes it out of the free queue ("touch").
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

from deepseek_runtime.kv.hashing import BlockHash


class KVBlock:
    """One physical block: its id, how many sequences use it, and its prefix hash."""

    __slots__ = ("block_hash", "block_id", "ref_cnt")

    def __init__(self, block_id: int) -> None:
        self.block_id = block_id
        self.ref_cnt = 0
        self.block_hash: BlockHash | None = None

    def __repr__(self) -> str:
        return (
            f"KVBlock(id={self.block_id}, ref={self.ref_cnt}, cached={self.block_hash is not None})"
        )


class BlockPool:
    """Fixed set of ``num_blocks`` blocks with ids ``0 .. num_blocks-1``."""

    def __init__(self, num_blocks: int, *, enable_caching: bool = True) -> None:
        if num_blocks < 1:
            raise ValueError("num_blocks must be >= 1")
        self.num_blocks = num_blocks
        self.enable_caching = enable_caching
        self.blocks = [KVBlock(i) for i in range(num_blocks)]
        self._free: OrderedDict[int, None] = OrderedDict((i, None) for i in range(num_blocks))
        self._cached: dict[BlockHash, KVBlock] = {}
        self.num_evictions = 0

    # -- queries -------------------------------------------------------------------
    @property
    def num_free_blocks(self) -> int:
        """Blocks with no user (including free blocks that still hold cached content)."""
        return len(self._free)

    @property
    def num_cached_blocks(self) -> int:
        return len(self._cached)

    def usage(self) -> float:
        """Fraction of blocks in use by at least one sequence (0..1)."""
        return 1.0 - len(self._free) / self.num_blocks

    def free_block_ids(self) -> list[int]:
        """Free queue in eviction order (first = next to be allocated)."""
        return list(self._free)

    def invariant_violations(self) -> list[str]:
        """Broken invariants (see the module docstring); empty when all hold. For tests
        and debugging: O(num_blocks)."""
        problems = []
        for block in self.blocks:
            in_free = block.block_id in self._free
            if block.ref_cnt < 0:
                problems.append(f"block {block.block_id}: ref_cnt {block.ref_cnt}")
            if (block.ref_cnt == 0) != in_free:
                problems.append(
                    f"block {block.block_id}: ref_cnt {block.ref_cnt} but "
                    f"{'in' if in_free else 'not in'} the free queue"
                )
        for block_hash, block in self._cached.items():
            if block.block_hash != block_hash:
                problems.append(f"block {block.block_id}: cached under a hash it does not hold")
        return problems

    def lookup(self, block_hash: BlockHash) -> KVBlock | None:
        """The block caching this prefix hash, if any (in use or free)."""
        return self._cached.get(block_hash)

    # -- mutation ------------------------------------------------------------------
    def allocate(self, n: int) -> list[KVBlock]:
        """Take ``n`` blocks from the front of the free queue, evicting cached content.

        Raises ValueError when fewer than ``n`` blocks are free; callers check
        :attr:`num_free_blocks` first (the manager returns None instead).
        """
        if n > len(self._free):
            raise ValueError(f"asked for {n} blocks, only {len(self._free)} free")
        out: list[KVBlock] = []
        for _ in range(n):
            block_id, _ = self._free.popitem(last=False)
            block = self.blocks[block_id]
            if block.block_hash is not None:
                if self._cached.get(block.block_hash) is block:
                    del self._cached[block.block_hash]
                block.block_hash = None
                self.num_evictions += 1
            block.ref_cnt = 1
            out.append(block)
        return out

    def touch(self, blocks: Iterable[KVBlock]) -> None:
        """Add one user to each block (a prefix-cache hit); free ones leave the queue."""
        for block in blocks:
            if block.ref_cnt == 0:
                del self._free[block.block_id]
            block.ref_cnt += 1

    def free(self, blocks: Iterable[KVBlock]) -> None:
        """Drop one user from each block, in the given order; unused blocks join the
        tail of the free queue (so blocks freed first are evicted first)."""
        for block in blocks:
            if block.ref_cnt <= 0:
                raise ValueError(f"double free of block {block.block_id}")
            block.ref_cnt -= 1
            if block.ref_cnt == 0:
                self._free[block.block_id] = None

    def cache(self, block: KVBlock, block_hash: BlockHash) -> None:
        """Register a block that just became full under its chained hash.

        When another block already caches the same hash (two sequences computed the
        same prefix at once), the first one stays the cached copy.
        """
        if not self.enable_caching or block.block_hash is not None:
            return
        if block_hash in self._cached:
            return
        block.block_hash = block_hash
        self._cached[block_hash] = block
