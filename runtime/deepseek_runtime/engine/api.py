"""The seam between the serving front ends (HTTP server, backends) and the engine.

The HTTP layer in ``deepseek_runtime.server`` and the backends in
``deepseek_runtime.backends`` only ever see these types; the native engine in
``deepseek_runtime.engine`` implements :class:`AsyncEngine`, and so do the vLLM and
Triton backends. Everything here is plain data (lists, not tensors) so that it can
cross a process boundary.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from enum import Enum


class FinishReason(str, Enum):  # noqa: UP042 (kept: StrEnum would change str())
    """Why a sequence stopped; the values are the OpenAI ``finish_reason`` strings."""

    STOP = "stop"  # EOS token, stop token id or stop string
    LENGTH = "length"  # max_tokens or max_model_len reached
    ABORT = "abort"  # client went away or the request was cancelled
    ERROR = "error"  # the engine failed this request (others keep running)


GUIDED_KINDS = ("json_object", "json_schema", "regex", "choice", "structural_tag")


@dataclass(frozen=True, slots=True)
class GuidedDecoding:
    """A structured-output constraint (enforced by the engine's grammar mask).

    ``kind`` is one of :data:`GUIDED_KINDS`; ``spec`` is the JSON Schema text
    (``json_schema``), the regular expression (``regex``), a JSON list of the allowed
    strings (``choice``), xgrammar's structural-tag JSON (``structural_tag``: the forced
    tool-call answers of ``server.tool_grammar``), or empty (``json_object``: any JSON
    object).
    """

    kind: str
    spec: str = ""

    def __post_init__(self) -> None:
        if self.kind not in GUIDED_KINDS:
            raise ValueError(f"guided decoding kind must be one of {', '.join(GUIDED_KINDS)}")


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """Per-request sampling settings; validated on construction (ValueError on bad input)."""

    max_tokens: int = 16
    temperature: float = 1.0  # 0 means greedy
    top_p: float = 1.0
    top_k: int = 0  # 0 or -1 disables
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    stop_token_ids: tuple[int, ...] = ()
    ignore_eos: bool = False
    logprobs: int | None = None  # number of top logprobs per generated token; None = off
    n: int = 1
    guided: GuidedDecoding | None = None  # structured output constraint
    # vLLM's prompt_logprobs: per prompt token (the first gets None), with this many top
    # alternatives; None = off
    prompt_logprobs: int | None = None

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise ValueError("max_tokens must be >= 1")
        if self.temperature < 0:
            raise ValueError("temperature must be >= 0")
        if not 0 < self.top_p <= 1:
            raise ValueError("top_p must be in (0, 1]")
        if self.top_k < -1:
            raise ValueError("top_k must be -1, 0 (disabled) or positive")
        if not 0 <= self.min_p <= 1:
            raise ValueError("min_p must be in [0, 1]")
        if self.repetition_penalty <= 0:
            raise ValueError("repetition_penalty must be > 0")
        if not -2 <= self.presence_penalty <= 2:
            raise ValueError("presence_penalty must be in [-2, 2]")
        if not -2 <= self.frequency_penalty <= 2:
            raise ValueError("frequency_penalty must be in [-2, 2]")
        if self.logprobs is not None and not 0 <= self.logprobs <= 20:
            raise ValueError("logprobs must be in [0, 20]")
        if self.prompt_logprobs is not None and not 0 <= self.prompt_logprobs <= 20:
            raise ValueError("prompt_logprobs must be in [0, 20]")
        if self.n < 1:
            raise ValueError("n must be >= 1")
        if any(not s for s in self.stop):
            raise ValueError("stop strings must be non-empty")


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    """Log-probability of a sampled token and the top alternatives at that step."""

    token_id: int
    logprob: float
    top: tuple[tuple[int, float], ...] = ()


@dataclass(slots=True)
class RequestOutput:
    """One streamed update for a request: the *delta* since the previous update.

    ``text`` never ends inside a multi-byte UTF-8 character. The last update of a
    request has ``finished=True`` and a ``finish_reason``.
    """

    request_id: str
    new_token_ids: list[int]
    text: str
    finished: bool = False
    finish_reason: FinishReason | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0  # cumulative
    logprobs: list[TokenLogprob] = field(default_factory=list)
    error: str | None = None
    queue_time: float | None = None  # seconds from arrival to first scheduling, once known
    # with ``params.prompt_logprobs``: one per prompt token (the first None), on the
    # request's first update only
    prompt_logprobs: list[TokenLogprob | None] | None = None


@dataclass(frozen=True, slots=True)
class EngineStats:
    """A snapshot the metrics layer turns into vLLM-compatible Prometheus series."""

    num_running: int
    num_waiting: int
    kv_cache_usage: float  # 0..1, fraction of KV blocks in use
    num_preemptions: int  # cumulative
    prefix_cache_queries: int  # cumulative, in tokens
    prefix_cache_hits: int  # cumulative, in tokens
    num_blocks_total: int
    num_blocks_free: int
    kv_cache_waste: float = 0.0  # 0..1, allocated KV slots not holding a token


class EngineError(Exception):
    """A request the engine refuses (bad prompt, too long, ...); the message is user-facing."""


class QueueFullError(EngineError):
    """The engine's waiting queue is full; front ends answer 429 with Retry-After."""


class AsyncEngine(abc.ABC):
    """What a front end drives. One instance serves many concurrent requests."""

    @abc.abstractmethod
    async def start(self) -> None:
        """Load the model / connect, and start the step loop. Idempotent."""

    @abc.abstractmethod
    async def shutdown(self) -> None:
        """Stop the loop; abort anything still running."""

    @abc.abstractmethod
    def generate(
        self, request_id: str, prompt_token_ids: list[int], params: SamplingParams
    ) -> AsyncIterator[RequestOutput]:
        """Submit a request and stream its deltas. Raises EngineError for bad input.

        Cancelling the consumer (or calling :meth:`abort`) frees the request's KV blocks
        at once.
        """

    @abc.abstractmethod
    async def abort(self, request_id: str) -> None:
        """Stop a request; a no-op when it already finished."""

    @abc.abstractmethod
    def stats(self) -> EngineStats:
        """Current load and cache figures."""

    @property
    @abc.abstractmethod
    def max_model_len(self) -> int:
        """Longest prompt + completion, in tokens, that a request may use."""
