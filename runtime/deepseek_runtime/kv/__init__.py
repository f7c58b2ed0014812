"""Paged KV cache bookkeeping: block pool, one record per request, prefix cache.

Pure Python (no torch). The engine's scheduler drives :class:`KVCacheManager`; the model
runner owns the tensors that the block ids index.
"""

from deepseek_runtime.kv.block_pool import BlockPool, KVBlock
from deepseek_runtime.kv.hashing import (
    ROOT_HASH,
    BlockHash,
    BlockHashFn,
    hash_block,
    hash_full_blocks,
)
from deepseek_runtime.kv.manager import NO_PREFIX, CachedPrefix, KVCacheManager, RequestKV

__all__ = [
    "NO_PREFIX",
    "ROOT_HASH",
    "BlockHash",
    "BlockHashFn",
    "BlockPool",
    "CachedPrefix",
    "KVBlock",
    "KVCacheManager",
    "RequestKV",
    "hash_block",
    "hash_full_blocks",
]
