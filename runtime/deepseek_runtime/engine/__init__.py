"""The native serving engine: continuous batching over a paged KV cache.

Front ends use :class:`NativeAsyncEngine` (an :class:`AsyncEngine`); benchmarks and tests
may drive the synchronous :class:`LLMEngine` directly.
"""

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
from deepseek_runtime.engine.async_engine import NativeAsyncEngine
from deepseek_runtime.engine.config import EngineConfig
from deepseek_runtime.engine.llm_engine import LLMEngine

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
