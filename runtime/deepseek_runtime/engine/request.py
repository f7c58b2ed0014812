"""Per-request state inside the engine: token lists and progress counters.

Created by :class:`deepseek_runtime.engine.llm_engine.LLMEngine` when a request is
added; mutated only by the scheduler (progress, status) — the KV manager owns the
request's blocks, the output processor its text.

Progress follows one rule: each step brings ``num_computed_tokens`` (tokens whose KV is
in the cache) closer to ``num_tokens`` (prompt + generated)::

    prompt                          output
    [p0 p1 p2 p3 p4 p5 p6 p7 p8 p9][o0 o1]
    |<----- num_computed ----->|           prefill chunk scheduled next: p7..p9, o0, o1
                                           (after a preemption) or 1 token when decoding
"""

from __future__ import annotations

import enum
import time

from deepseek_runtime.engine.api import FinishReason, SamplingParams


class RequestStatus(enum.Enum):
    WAITING = "waiting"
    RUNNING = "running"
    FINISHED = "finished"


class Request:
    """One sequence being generated (the engine handles ``n == 1`` per request)."""

    __slots__ = (
        "all_token_ids",
        "arrival_time",
        "finish_reason",
        "first_scheduled_time",
        "first_token_time",
        "max_total_tokens",
        "num_computed_tokens",
        "num_preemptions",
        "num_prompt_tokens",
        "params",
        "request_id",
        "status",
    )

    def __init__(
        self,
        request_id: str,
        prompt_token_ids: list[int],
        params: SamplingParams,
        max_model_len: int,
    ) -> None:
        self.request_id = request_id
        self.params = params
        self.all_token_ids = list(prompt_token_ids)
        self.num_prompt_tokens = len(prompt_token_ids)
        self.num_computed_tokens = 0
        # The request stops (finish reason "length") once it holds this many tokens.
        self.max_total_tokens = min(self.num_prompt_tokens + params.max_tokens, max_model_len)
        self.status = RequestStatus.WAITING
        self.finish_reason: FinishReason | None = None
        self.num_preemptions = 0
        self.arrival_time = time.monotonic()
        self.first_token_time: float | None = None
        # Set once, when the scheduler first admits the request (preemption keeps it).
        self.first_scheduled_time: float | None = None

    @property
    def queue_time(self) -> float | None:
        """Seconds between arrival and first scheduling; None while still waiting."""
        if self.first_scheduled_time is None:
            return None
        return self.first_scheduled_time - self.arrival_time

    @property
    def num_tokens(self) -> int:
        return len(self.all_token_ids)

    @property
    def num_output_tokens(self) -> int:
        return len(self.all_token_ids) - self.num_prompt_tokens

    @property
    def output_token_ids(self) -> list[int]:
        return self.all_token_ids[self.num_prompt_tokens :]

    @property
    def prompt_token_ids(self) -> list[int]:
        return self.all_token_ids[: self.num_prompt_tokens]

    @property
    def is_finished(self) -> bool:
        return self.status is RequestStatus.FINISHED

    def __repr__(self) -> str:
        return (
            f"Request({self.request_id!r}, {self.status.value}, "
            f"computed={self.num_computed_tokens}/{self.num_tokens})"
        )
