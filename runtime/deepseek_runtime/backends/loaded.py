"""What a backend hands the HTTP layer once the model is ready."""

from __future__ import annotations

from dataclasses import dataclass

from ..engine.api import AsyncEngine
from ..engine.kv_sizing import KVCacheSizing
from .tokenizer import ServerTokenizer


@dataclass(frozen=True, slots=True)
class LoadedModel:
    """A started engine and the tokenizer (with chat template) that goes with it."""

    engine: AsyncEngine
    tokenizer: ServerTokenizer
    kv_cache: KVCacheSizing | None = None
    """How the native engine sized its KV cache (exported as metrics); None elsewhere."""
