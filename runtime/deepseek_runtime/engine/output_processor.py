"""Turns per-step token updates into streamed :class:`RequestOutput` deltas.

Called by :class:`deepseek_runtime.engine.llm_engine.LLMEngine` after the scheduler
has appended the step's tokens. It owns each request's text state (incremental
detokenizer + stop-string matcher) and reports stop-string hits back to the engine,
which then finishes the request in the scheduler. A finishing request (length, stop,
EOS, error) first flushes the detokenizer's held-back bytes, so its text always equals
the decoding of its tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

from deepseek_runtime.engine.api import FinishReason, RequestOutput, TokenLogprob
from deepseek_runtime.engine.detokenizer import IncrementalDetokenizer, TokenDecoder
from deepseek_runtime.engine.request import Request
from deepseek_runtime.engine.stop_strings import StopStringMatcher


@dataclass(slots=True)
class _TextState:
    detokenizer: IncrementalDetokenizer | None
    matcher: StopStringMatcher
    prompt_tokens: int


def _final_text(state: _TextState) -> str:
    """What a finishing request still owes: held-back bytes, then held-back stop text."""
    if state.detokenizer is None:
        return state.matcher.flush()
    return state.matcher.add(state.detokenizer.flush()) + state.matcher.flush()


class OutputProcessor:
    """Per-request text state; one :class:`RequestOutput` per request per step."""

    def __init__(self, tokenizer: TokenDecoder | None) -> None:
        self._tokenizer = tokenizer
        self._states: dict[str, _TextState] = {}

    def add_request(self, request: Request) -> None:
        detok = (
            IncrementalDetokenizer(self._tokenizer, request.prompt_token_ids)
            if self._tokenizer is not None
            else None
        )
        self._states[request.request_id] = _TextState(
            detok, StopStringMatcher(request.params.stop), request.num_prompt_tokens
        )

    def on_token(
        self, request: Request, token_id: int, logprob: TokenLogprob | None
    ) -> tuple[RequestOutput, bool]:
        """Build the delta for a request that just got ``token_id``.

        Returns the output and whether a stop string matched (the caller must then
        finish the request; the output is already marked finished with STOP).
        """
        state = self._states[request.request_id]
        text = ""
        stop_hit = False
        if state.detokenizer is not None:
            text = state.matcher.add(state.detokenizer.add_tokens([token_id]))
            stop_hit = state.matcher.stopped and not request.is_finished
        finished = request.is_finished or stop_hit
        reason = FinishReason.STOP if stop_hit else request.finish_reason
        if finished:
            text += _final_text(state)
            del self._states[request.request_id]
        out = RequestOutput(
            request_id=request.request_id,
            new_token_ids=[token_id],
            text=text,
            finished=finished,
            finish_reason=reason if finished else None,
            prompt_tokens=request.num_prompt_tokens,
            completion_tokens=request.num_output_tokens,
            logprobs=[logprob] if logprob is not None else [],
            queue_time=request.queue_time,
        )
        return out, stop_hit

    def on_finish(
        self, request: Request, reason: FinishReason, error: str | None = None
    ) -> RequestOutput:
        """Final delta for a request ended outside a step's tokens (abort, error)."""
        state = self._states.pop(request.request_id, None)
        text = _final_text(state) if state is not None and reason is not FinishReason.ABORT else ""
        return RequestOutput(
            request_id=request.request_id,
            new_token_ids=[],
            text=text,
            finished=True,
            finish_reason=reason,
            prompt_tokens=request.num_prompt_tokens,
            completion_tokens=request.num_output_tokens,
            error=error,
            queue_time=request.queue_time,
        )

    def __contains__(self, request_id: str) -> bool:
        return request_id in self._states
