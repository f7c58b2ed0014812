"""The native serving engine: continuous batching over a paged KV cache.

Front ends use :class:`NativeAsyncEngine` (an :class:`AsyncEngine`); benchmarks and tests
may drive the synchronous :class:`LLMEngine` directly. Those two load torch, so they are
imported on first use: the server's option parsing reads the defaults in
``engine.config`` and the seam types in ``engine.api`` without paying for torch
(``deepseek-runtime serve --help`` stays quick).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from deepseek_runtime.engine.api import (
    AsyncEngine,
    EngineError,
    EngineStats,
    FinishReason,
    QueueFullError,
    RequestOutput,
    SamplingParams,
    TokenLogprob,
)
from deepseek_runtime.engine.config import EngineConfig

if TYPE_CHECKING:
    from deepseek_runtime.engine.async_engine import NativeAsyncEngine
    from deepseek_runtime.engine.llm_engine import LLMEngine

_ON_FIRST_USE = {
    "LLMEngine": "deepseek_runtime.engine.llm_engine",
    "NativeAsyncEngine": "deepseek_runtime.engine.async_engine",
}

__all__ = [
    "AsyncEngine",
    "EngineConfig",
    "EngineError",
    "EngineStats",
    "FinishReason",
    "LLMEngine",
    "NativeAsyncEngine",
    "QueueFullError",
    "RequestOutput",
    "SamplingParams",
    "TokenLogprob",
]


def __getattr__(name: str) -> Any:
    module = _ON_FIRST_USE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
