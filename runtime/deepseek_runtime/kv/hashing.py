"""Chained content hashes of full KV blocks, the keys of the prefix cache.

Called by :mod:`deepseek_runtime.kv.manager` when it looks up a prompt's cached prefix
and when it registers blocks that just became full.

A block's hash covers its parent's hash and its own token ids, so equal hashes mean
equal *prefixes*, not just equal blocks::

    tokens:  [t0 .. t15] [t16 .. t31] [t32 .. t47] [t48 t49]   (block_size 16)
    hash:     h0 = H(ROOT, t0..t15)
              h1 = H(h0,  t16..t31)
              h2 = H(h1,  t32..t47)
              (partial block: never hashed, never shared)

``H`` is SHA-256 (truncated to 16 bytes), so a collision is negligible, and the value
is stable across processes.
"""

from __future__ import annotations

import hashlib
from array import array
from collections.abc import Callable, Sequence

BlockHash = bytes
"""16-byte digest identifying a full block *and* everything before it."""

ROOT_HASH: BlockHash = b"\x00" * 16

BlockHashFn = Callable[[BlockHash, Sequence[int]], BlockHash]
"""``(parent hash, token ids of one full block) -> hash``; :func:`hash_block` by default,
a counting wrapper in tests."""


def hash_block(parent: BlockHash, token_ids: Sequence[int]) -> BlockHash:
    """Hash of one full block given its parent's hash (``ROOT_HASH`` for the first)."""
    digest = hashlib.sha256(parent)
    digest.update(array("q", token_ids).tobytes())
    return digest.digest()[:16]


def hash_full_blocks(
    token_ids: Sequence[int],
    block_size: int,
    *,
    start_block: int = 0,
    parent: BlockHash = ROOT_HASH,
    max_tokens: int | None = None,
    hash_fn: BlockHashFn = hash_block,
) -> list[BlockHash]:
    """Hashes of the full blocks of ``token_ids[:max_tokens]``, from ``start_block`` on.

    ``parent`` must be the hash of block ``start_block - 1`` (``ROOT_HASH`` when
    starting at 0); this lets a caller extend a chain it already holds. ``hash_fn``
    hashes one block.
    """
    if block_size < 1:
        raise ValueError("block_size must be >= 1")
    limit = len(token_ids) if max_tokens is None else min(max_tokens, len(token_ids))
    hashes: list[BlockHash] = []
    for block in range(start_block, limit // block_size):
        parent = hash_fn(parent, token_ids[block * block_size : (block + 1) * block_size])
        hashes.append(parent)
    return hashes
