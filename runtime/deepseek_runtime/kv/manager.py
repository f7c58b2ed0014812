"""KV cache manager: per-sequence block tables on top of the :class:`BlockPool`.

Called by the engine's scheduler, which asks for slots before each step and frees a
sequence's blocks when it finishes, is aborted or is preempted. The manager answers
with block ids or ``None`` ("not enough free blocks": the scheduler then preempts).
It never touches tensors.

Layering and ownership::

    Scheduler ──(request id, token counts)──▶ KVCacheManager ──▶ BlockPool
       owns queues                             owns block tables    owns blocks,
                                               + hash chains         free queue,
                                                                     hash index

    one sequence (block_size 4), 10 tokens computed, 1 more scheduled:
      block table:  [ 5 ][ 2 ][ 8 ]
      slots:        ████ ████ ███·     █ = holds a token (or will after this step)
      hash chain:   h0   h1            full blocks only; blocks 5 and 2 are shareable
      waste:        the · slots (allocated, no token)

Accounting: prefix-cache *queries* and *hits* are counted in tokens when a sequence
is admitted; *waste* is allocated slots not holding a computed token.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from deepseek_runtime.kv.block_pool import BlockPool, KVBlock
from deepseek_runtime.kv.hashing import ROOT_HASH, BlockHash, hash_full_blocks


@dataclass(frozen=True, slots=True)
class CachedPrefix:
    """A lookup result: cached blocks covering the first ``num_tokens`` of a prompt."""

    blocks: tuple[KVBlock, ...]
    hashes: tuple[BlockHash, ...]
    num_tokens: int
    num_query_tokens: int


NO_PREFIX = CachedPrefix((), (), 0, 0)


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


class KVCacheManager:
    """Hands out KV blocks to sequences; optional prefix caching with chained hashes."""

    def __init__(
        self, num_blocks: int, block_size: int, *, enable_prefix_caching: bool = True
    ) -> None:
        if block_size < 1:
            raise ValueError("block_size must be >= 1")
        self.block_size = block_size
        self.enable_prefix_caching = enable_prefix_caching
        self.pool = BlockPool(num_blocks, enable_caching=enable_prefix_caching)
        self._blocks: dict[str, list[KVBlock]] = {}
        self._ids: dict[str, list[int]] = {}
        self._hashes: dict[str, list[BlockHash]] = {}
        self._num_tokens: dict[str, int] = {}
        self.prefix_cache_queries = 0
        self.prefix_cache_hits = 0

    # -- lookup --------------------------------------------------------------------
    def find_cached_prefix(self, token_ids: Sequence[int]) -> CachedPrefix:
        """The longest cached run of full blocks at the start of ``token_ids``.

        The last token is never served from the cache: the model must compute at
        least one token to produce the next-token logits.
        """
        if not self.enable_prefix_caching or len(token_ids) <= self.block_size:
            return CachedPrefix((), (), 0, len(token_ids))
        blocks: list[KVBlock] = []
        hashes: list[BlockHash] = []
        parent = ROOT_HASH
        bs = self.block_size
        for i in range((len(token_ids) - 1) // bs):
            h = hash_full_blocks(token_ids[i * bs : (i + 1) * bs], bs, parent=parent)[0]
            block = self.pool.lookup(h)
            if block is None:
                break
            blocks.append(block)
            hashes.append(h)
            parent = h
        return CachedPrefix(tuple(blocks), tuple(hashes), len(blocks) * bs, len(token_ids))

    # -- allocation ----------------------------------------------------------------
    def allocate_slots(
        self, request_id: str, num_tokens: int, prefix: CachedPrefix = NO_PREFIX
    ) -> list[int] | None:
        """Make the sequence's blocks cover ``num_tokens`` tokens in total.

        ``prefix`` (only for a sequence that holds no blocks yet) is adopted first.
        Returns the whole block table, or None when the free blocks do not suffice;
        nothing changes in that case.
        """
        blocks = self._blocks.get(request_id)
        if blocks is not None and prefix.blocks:
            raise ValueError(f"request {request_id!r} already holds blocks; no prefix to adopt")
        held = (0 if blocks is None else len(blocks)) + len(prefix.blocks)
        need = _cdiv(num_tokens, self.block_size) - held
        reclaimed = sum(1 for b in prefix.blocks if b.ref_cnt == 0)
        if need > self.pool.num_free_blocks - reclaimed:
            return None
        if blocks is None:
            blocks = []
            self._blocks[request_id] = blocks
            self._ids[request_id] = []
            self._hashes[request_id] = []
            self._num_tokens[request_id] = 0
            self.prefix_cache_queries += prefix.num_query_tokens
            self.prefix_cache_hits += prefix.num_tokens
        ids = self._ids[request_id]
        if prefix.blocks:
            self.pool.touch(prefix.blocks)
            blocks.extend(prefix.blocks)
            ids.extend(b.block_id for b in prefix.blocks)
            self._hashes[request_id].extend(prefix.hashes)
            self._num_tokens[request_id] = prefix.num_tokens
        if need > 0:
            new = self.pool.allocate(need)
            blocks.extend(new)
            ids.extend(b.block_id for b in new)
        return ids

    def record_computed(self, request_id: str, token_ids: Sequence[int], num_computed: int) -> None:
        """Note that the first ``num_computed`` tokens are in the cache; blocks that
        became full are registered in the prefix cache."""
        self._num_tokens[request_id] = num_computed
        if not self.enable_prefix_caching:
            return
        hashes = self._hashes[request_id]
        full = num_computed // self.block_size
        if full <= len(hashes):
            return
        new = hash_full_blocks(
            token_ids,
            self.block_size,
            start_block=len(hashes),
            parent=hashes[-1] if hashes else ROOT_HASH,
            max_tokens=num_computed,
        )
        blocks = self._blocks[request_id]
        for i, h in enumerate(new, start=len(hashes)):
            self.pool.cache(blocks[i], h)
        hashes.extend(new)

    def free(self, request_id: str) -> None:
        """Release a sequence's blocks (tail first, so tails are evicted first).

        A no-op for a sequence that holds none.
        """
        blocks = self._blocks.pop(request_id, None)
        self._ids.pop(request_id, None)
        self._hashes.pop(request_id, None)
        self._num_tokens.pop(request_id, None)
        if blocks:
            self.pool.free(reversed(blocks))

    # -- queries -------------------------------------------------------------------
    def block_ids(self, request_id: str) -> list[int]:
        return list(self._ids.get(request_id, ()))

    def holds(self, request_id: str) -> bool:
        return request_id in self._blocks

    @property
    def num_blocks(self) -> int:
        return self.pool.num_blocks

    @property
    def num_free_blocks(self) -> int:
        return self.pool.num_free_blocks

    def usage(self) -> float:
        return self.pool.usage()

    def allocated_slots(self) -> int:
        """Slots in blocks used by some sequence (shared blocks counted once)."""
        return (self.pool.num_blocks - self.pool.num_free_blocks) * self.block_size

    def wasted_slots(self) -> int:
        """Allocated slots that hold no computed token.

        Shared blocks are full, so each sequence's waste is the empty tail of its own
        last blocks and summing per sequence counts no slot twice.
        """
        return sum(
            len(blocks) * self.block_size - self._num_tokens[rid]
            for rid, blocks in self._blocks.items()
        )

    def waste_fraction(self) -> float:
        allocated = self.allocated_slots()
        return self.wasted_slots() / allocated if allocated else 0.0
