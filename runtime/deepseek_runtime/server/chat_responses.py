"""``/v1/chat/completions`` answers: the whole ``chat.completion`` and its stream chunks.

``top_logprobs`` is ``None`` when the client did not ask for logprobs, else how many
alternatives each token lists. A streamed choice opens with a chunk carrying only the
assistant role, as OpenAI's do. Pure: built by ``server.openai_routes``, driven by
``server.driver``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .generation import Update
from .responses import ChoiceBuffer, ResponseHead, TokenText, chat_logprobs, usage, usage_chunk

CHUNK_OBJECT = "chat.completion.chunk"


@dataclass(frozen=True, slots=True)
class ChatBody:
    """The non-streamed answer: one assistant message per choice."""

    head: ResponseHead
    token_text: TokenText
    top_logprobs: int | None

    def body(
        self, choices: Sequence[ChoiceBuffer], prompt_tokens: int, completion_tokens: int
    ) -> dict[str, Any]:
        out = []
        for i, ch in enumerate(choices):
            lp = None
            if self.top_logprobs is not None:
                lp = chat_logprobs(ch.logprobs, self.token_text, self.top_logprobs)
            out.append(
                {
                    "index": i,
                    "message": {"role": "assistant", "content": "".join(ch.text)},
                    "logprobs": lp,
                    "finish_reason": ch.finish_reason,
                }
            )
        return self.head.envelope("chat.completion", out, usage(prompt_tokens, completion_tokens))


@dataclass(slots=True)
class ChatChunks:
    """The streamed answer: a role chunk when a choice starts, then one chunk per delta."""

    head: ResponseHead
    token_text: TokenText
    top_logprobs: int | None
    _started: set[int] = field(init=False, default_factory=set)

    def _chunk(
        self, index: int, delta: dict[str, Any], lp: dict[str, Any] | None, reason: str | None
    ) -> dict[str, Any]:
        choice = {"index": index, "delta": delta, "logprobs": lp, "finish_reason": reason}
        return self.head.envelope(CHUNK_OBJECT, [choice], None)

    def chunks(self, upd: Update) -> list[dict[str, Any]]:
        out = []
        if upd.index not in self._started:
            self._started.add(upd.index)
            out.append(self._chunk(upd.index, {"role": "assistant", "content": ""}, None, None))
        lp = None
        if self.top_logprobs is not None:
            lp = chat_logprobs(upd.logprobs, self.token_text, self.top_logprobs)
        if upd.text or upd.finished or upd.logprobs:
            delta = {"content": upd.text} if upd.text else {}
            out.append(self._chunk(upd.index, delta, lp, upd.finish_reason))
        return out

    def usage_chunk(
        self, created: int, prompt_tokens: int, completion_tokens: int
    ) -> dict[str, Any]:
        return usage_chunk(self.head, CHUNK_OBJECT, created, prompt_tokens, completion_tokens)
