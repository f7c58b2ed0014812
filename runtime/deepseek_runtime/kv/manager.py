"""KV cache manager: one record per request (block table, hash chain, counts) on top of
the :class:`BlockPool`.

Called by the engine's scheduler, which asks for slots before each step, reports
computed tokens after it, and frees a request's blocks when it is preempted
(:meth:`KVCacheManager.release_blocks`) or ends (:meth:`KVCacheManager.free`). The
manager answers with block ids or ``None`` ("not enough free blocks": the scheduler then
preempts). It never touches tensors.

Layering and ownership::

    Scheduler ──(request id, token ids, counts)──▶ KVCacheManager ──▶ BlockPool
       owns queues                                  owns RequestKV     owns blocks,
                                                    records            free queue,
                                                                       hash index

    one request (block_size 4), 10 tokens computed, 1 more scheduled:
      block_ids:     [ 5 ][ 2 ][ 8 ]
      slots:         ████ ████ ███·     █ = holds a token (or will after this step)
      block_hashes:  h0   h1            full blocks only; blocks 5 and 2 are shareable
      waste:         the · slots (allocated, no token)

Each full block's chained hash is computed once per request, the first time it is
needed (a waiting prompt is looked up in the prefix cache, or the block's tokens are
computed), and kept in the record, also across preemption: a request's token ids only
ever grow by appending, so a hash, once known, stays right. A prompt that waits for
memory for many steps is looked up each step but hashed once.

The block table (``RequestKV.block_ids``) is the manager's list, handed out without a
copy: the scheduler puts it into each ``ScheduledChunk`` and the model runner only reads
it during that step's ``execute``. The manager only appends to it while the request holds
its blocks; releasing them starts a new list instead of clearing the old one, so a
chunk's table never changes under it.

Accounting: prefix-cache *queries* and *hits* are counted in tokens when a request gets
its first blocks; *waste* is allocated slots not holding a computed token.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from deepseek_runtime.kv.block_pool import BlockPool, KVBlock
from deepseek_runtime.kv.hashing import (
    ROOT_HASH,
    BlockHash,
    BlockHashFn,
    hash_block,
    hash_full_blocks,
)


@dataclass(frozen=True, slots=True)
class CachedPrefix:
    """A lookup result: cached blocks covering the first ``num_tokens`` of a prompt."""

    blocks: tuple[KVBlock, ...]
    num_tokens: int
    num_query_tokens: int


NO_PREFIX = CachedPrefix((), 0, 0)


@dataclass(slots=True, eq=False)
class RequestKV:
    """The manager's record of one request, from its first lookup or allocation until
    :meth:`KVCacheManager.free`."""

    block_ids: list[int] = field(default_factory=list)
    """Block table: append-only while held, replaced (never cleared) on release."""
    block_hashes: list[BlockHash] = field(default_factory=list)
    """Chained hashes of the request's first full blocks; kept across preemption."""
    num_computed_tokens: int = 0
    """Tokens whose KV is in the held blocks."""
    num_cached_blocks: int = 0
    """Held blocks already registered in the prefix cache (a prefix of ``block_ids``)."""


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


class KVCacheManager:
    """Hands out KV blocks to requests; optional prefix caching with chained hashes.

    ``hash_fn`` hashes one full block (``hash_block``; tests pass a counting wrapper).
    """

    def __init__(
        self,
        num_blocks: int,
        block_size: int,
        *,
        enable_prefix_caching: bool = True,
        hash_fn: BlockHashFn = hash_block,
    ) -> None:
        if block_size < 1:
            raise ValueError("block_size must be >= 1")
        self.block_size = block_size
        self.enable_prefix_caching = enable_prefix_caching
        self.pool = BlockPool(num_blocks, enable_caching=enable_prefix_caching)
        self._hash_fn = hash_fn
        self._records: dict[str, RequestKV] = {}
        self.prefix_cache_queries = 0
        self.prefix_cache_hits = 0

    # -- hash chains -----------------------------------------------------------------
    def _extend_hashes(self, record: RequestKV, token_ids: Sequence[int], limit: int) -> None:
        """Hash the full blocks of ``token_ids[:limit]`` the record has no hash for yet."""
        hashes = record.block_hashes
        if limit // self.block_size > len(hashes):
            hashes.extend(
                hash_full_blocks(
                    token_ids,
                    self.block_size,
                    start_block=len(hashes),
                    parent=hashes[-1] if hashes else ROOT_HASH,
                    max_tokens=limit,
                    hash_fn=self._hash_fn,
                )
            )

    # -- lookup --------------------------------------------------------------------
    def find_cached_prefix(self, request_id: str, token_ids: Sequence[int]) -> CachedPrefix:
        """The longest cached run of full blocks at the start of ``token_ids``, the
        tokens of ``request_id`` (which holds no blocks yet).

        The last token is never served from the cache: the model must compute at
        least one token to produce the next-token logits.
        """
        if not self.enable_prefix_caching or len(token_ids) <= self.block_size:
            return CachedPrefix((), 0, len(token_ids))
        record = self._records.setdefault(request_id, RequestKV())
        self._extend_hashes(record, token_ids, len(token_ids) - 1)
        blocks: list[KVBlock] = []
        hashes = record.block_hashes
        for i in range((len(token_ids) - 1) // self.block_size):
            block = self.pool.lookup(hashes[i])
            if block is None:
                break
            blocks.append(block)
        return CachedPrefix(tuple(blocks), len(blocks) * self.block_size, len(token_ids))

    # -- allocation ----------------------------------------------------------------
    def allocate_slots(
        self, request_id: str, num_tokens: int, prefix: CachedPrefix = NO_PREFIX
    ) -> list[int] | None:
        """Make the request's blocks cover ``num_tokens`` tokens in total.

        ``prefix`` (only for a request that holds no blocks yet) is adopted first.
        Returns the block table, the manager's own list (read it, never change it), or
        None when the free blocks do not suffice; nothing changes in that case.
        """
        record = self._records.get(request_id)
        held = 0 if record is None else len(record.block_ids)
        if held and prefix.blocks:
            raise ValueError(f"request {request_id!r} already holds blocks; no prefix to adopt")
        need = _cdiv(num_tokens, self.block_size) - held - len(prefix.blocks)
        reclaimed = sum(1 for b in prefix.blocks if b.ref_cnt == 0)
        if need > self.pool.num_free_blocks - reclaimed:
            return None
        if record is None:
            record = self._records[request_id] = RequestKV()
        ids = record.block_ids
        if not held:
            self.prefix_cache_queries += prefix.num_query_tokens
            self.prefix_cache_hits += prefix.num_tokens
        if prefix.blocks:
            self.pool.touch(prefix.blocks)
            ids.extend(b.block_id for b in prefix.blocks)
            record.num_computed_tokens = prefix.num_tokens
            record.num_cached_blocks = len(prefix.blocks)
        if need > 0:
            ids.extend(b.block_id for b in self.pool.allocate(need))
        return ids

    def record_computed(self, request_id: str, token_ids: Sequence[int], num_computed: int) -> None:
        """Note that the first ``num_computed`` of ``token_ids`` are in the cache; blocks
        that became full are registered in the prefix cache."""
        record = self._records[request_id]
        record.num_computed_tokens = num_computed
        if not self.enable_prefix_caching:
            return
        full = num_computed // self.block_size
        if full <= record.num_cached_blocks:
            return
        self._extend_hashes(record, token_ids, num_computed)
        blocks = self.pool.blocks
        for i in range(record.num_cached_blocks, full):
            self.pool.cache(blocks[record.block_ids[i]], record.block_hashes[i])
        record.num_cached_blocks = full

    def release_blocks(self, request_id: str) -> None:
        """Free a request's blocks (tail first, so tails are evicted first) and keep its
        record: a preempted request keeps its hash chain for when it is re-admitted.

        A no-op for a request that holds none.
        """
        record = self._records.get(request_id)
        if record is None or not record.block_ids:
            return
        blocks = self.pool.blocks
        self.pool.free(blocks[i] for i in reversed(record.block_ids))
        record.block_ids = []  # a new list: chunks still carrying the old one keep it
        record.num_computed_tokens = 0
        record.num_cached_blocks = 0

    def free(self, request_id: str) -> None:
        """Free a request's blocks and forget it (it finished or was aborted).

        A no-op for a request the manager does not know.
        """
        self.release_blocks(request_id)
        self._records.pop(request_id, None)

    # -- queries -------------------------------------------------------------------
    def block_ids(self, request_id: str) -> list[int]:
        """A copy of the request's block table (empty when it holds no blocks)."""
        record = self._records.get(request_id)
        return [] if record is None else list(record.block_ids)

    def holds(self, request_id: str) -> bool:
        """Whether the request holds at least one block."""
        record = self._records.get(request_id)
        return record is not None and bool(record.block_ids)

    @property
    def num_blocks(self) -> int:
        return self.pool.num_blocks

    @property
    def num_free_blocks(self) -> int:
        return self.pool.num_free_blocks

    def usage(self) -> float:
        return self.pool.usage()

    def allocated_slots(self) -> int:
        """Slots in blocks used by some request (shared blocks counted once)."""
        return (self.pool.num_blocks - self.pool.num_free_blocks) * self.block_size

    def wasted_slots(self) -> int:
        """Allocated slots that hold no computed token.

        Shared blocks are full, so each request's waste is the empty tail of its own
        last blocks and summing per request counts no slot twice.
        """
        return sum(
            len(r.block_ids) * self.block_size - r.num_computed_tokens
            for r in self._records.values()
        )

    def waste_fraction(self) -> float:
        allocated = self.allocated_slots()
        return self.wasted_slots() / allocated if allocated else 0.0
