"""Engine settings, validated on construction. Built by ``backends.native`` (or by tests)
and read by :class:`deepseek_runtime.engine.llm_engine.LLMEngine`.

The ``DEFAULT_*`` constants are the one home of these defaults: the native backend's
options and the server's ``--max-num-seqs`` / ``--max-waiting`` / ... refer to them. They
are the values the server has always used: 64 running sequences keep a CPU or single-GPU
step short, and 256 queued requests bound the memory a burst can hold before clients are
told to retry (429).
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_MAX_NUM_SEQS = 64
DEFAULT_MAX_NUM_BATCHED_TOKENS = 2048
DEFAULT_MAX_WAITING = 256
DEFAULT_ENABLE_PREFIX_CACHING = True


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """Scheduling and admission limits of one engine."""

    max_model_len: int
    """Longest prompt + completion in tokens; also capped by the KV pool's capacity."""
    max_num_seqs: int = DEFAULT_MAX_NUM_SEQS
    """Most sequences in one step (running batch size)."""
    max_num_batched_tokens: int = DEFAULT_MAX_NUM_BATCHED_TOKENS
    """Token budget of one step (decode tokens + prefill chunk tokens)."""
    enable_prefix_caching: bool = DEFAULT_ENABLE_PREFIX_CACHING
    """Reuse KV blocks of equal prompt prefixes (chained block hashes)."""
    max_waiting: int = DEFAULT_MAX_WAITING
    """Most requests queued (not yet running) before new ones are refused (HTTP 429)."""
    watermark: float = 0.01
    """Fraction of KV blocks kept free when admitting new requests (fewer preemptions)."""
    seed: int | None = None
    """Seed of the generator shared by requests without their own seed."""

    def __post_init__(self) -> None:
        if self.max_model_len < 2:
            raise ValueError("max_model_len must be >= 2")
        if self.max_num_seqs < 1:
            raise ValueError("max_num_seqs must be >= 1")
        if self.max_num_batched_tokens < 1:
            raise ValueError("max_num_batched_tokens must be >= 1")
        if self.max_waiting < 1:
            raise ValueError("max_waiting must be >= 1")
        if not 0 <= self.watermark < 1:
            raise ValueError("watermark must be in [0, 1)")
