"""Engine settings, validated on construction. Built by ``NativeAsyncEngine.from_model_dir``
(or by tests) and read by :class:`deepseek_runtime.engine.llm_engine.LLMEngine`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """Scheduling and admission limits of one engine."""

    max_model_len: int
    """Longest prompt + completion in tokens; also capped by the KV pool's capacity."""
    max_num_seqs: int = 256
    """Most sequences in one step (running batch size)."""
    max_num_batched_tokens: int = 2048
    """Token budget of one step (decode tokens + prefill chunk tokens)."""
    enable_prefix_caching: bool = True
    """Reuse KV blocks of equal prompt prefixes (chained block hashes)."""
    max_waiting: int = 1024
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
