"""``/v1/chat/completions`` answers: the whole ``chat.completion`` and its stream chunks.

``top_logprobs`` is ``None`` when the client did not ask for logprobs, else how many
alternatives each token lists. A streamed choice opens with a chunk carrying only the
assistant role, as OpenAI's do. With a reasoning or tool-call parser on
(:class:`~.chat_output.ChatOutputOptions`), each choice's text goes through a
:class:`~.chat_output.ChoiceParser`: the message gains ``reasoning_content`` and
``tool_calls``, and a choice that called tools finishes with ``"tool_calls"``. A streamed
call is two chunks, its id and name then its arguments, which the openai SDK merges by
``index``. Pure: built by ``server.openai_routes``, driven by ``server.driver``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .chat_output import NO_PARSING, ChatDelta, ChatOutputOptions, ChoiceParser
from .generation import Update
from .responses import ChoiceBuffer, ResponseHead, TokenText, chat_logprobs, usage, usage_chunk
from .tool_calls import ParsedCall

CHUNK_OBJECT = "chat.completion.chunk"


def call_id(head: ResponseHead, choice: int, index: int) -> str:
    """A tool call's id: unique because the request id is."""
    return f"call_{head.request_id.rsplit('-', 1)[-1][:24]}_{choice}_{index}"


def _reason(reason: str | None, called: bool) -> str | None:
    return "tool_calls" if called and reason == "stop" else reason


def _message(delta: ChatDelta, options: ChatOutputOptions, ids: list[str]) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": delta.content}
    if options.reasoning:
        message["reasoning_content"] = delta.reasoning or None
    if delta.calls:
        message["content"] = delta.content or None
        message["tool_calls"] = [
            {"id": i, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for i, c in zip(ids, delta.calls, strict=True)
        ]
    return message


@dataclass(frozen=True, slots=True)
class ChatBody:
    """The non-streamed answer: one assistant message per choice."""

    head: ResponseHead
    token_text: TokenText
    top_logprobs: int | None
    options: ChatOutputOptions = NO_PARSING

    def _parsed(self, ch: ChoiceBuffer) -> ChatDelta:
        if not self.options.parses:
            return ChatDelta(content="".join(ch.text))
        parser, whole = ChoiceParser(self.options), ChatDelta()
        for text, ids in zip(ch.text, ch.token_ids, strict=True):
            whole.extend(parser.feed(text, ids))
        whole.extend(parser.finish())
        return whole

    def body(
        self, choices: Sequence[ChoiceBuffer], prompt_tokens: int, completion_tokens: int
    ) -> dict[str, Any]:
        out = []
        for i, ch in enumerate(choices):
            lp = None
            if self.top_logprobs is not None:
                lp = chat_logprobs(ch.logprobs, self.token_text, self.top_logprobs)
            parsed = self._parsed(ch)
            ids = [call_id(self.head, i, k) for k in range(len(parsed.calls))]
            out.append(
                {
                    "index": i,
                    "message": _message(parsed, self.options, ids),
                    "logprobs": lp,
                    "finish_reason": _reason(ch.finish_reason, bool(parsed.calls)),
                }
            )
        return self.head.envelope("chat.completion", out, usage(prompt_tokens, completion_tokens))


@dataclass(slots=True)
class ChatChunks:
    """The streamed answer: a role chunk when a choice starts, then one chunk per delta."""

    head: ResponseHead
    token_text: TokenText
    top_logprobs: int | None
    options: ChatOutputOptions = NO_PARSING
    _parsers: dict[int, ChoiceParser] = field(init=False, default_factory=dict)
    _calls: dict[int, int] = field(init=False, default_factory=dict)  # choice → calls sent

    def _chunk(
        self, index: int, delta: dict[str, Any], lp: dict[str, Any] | None, reason: str | None
    ) -> dict[str, Any]:
        choice = {"index": index, "delta": delta, "logprobs": lp, "finish_reason": reason}
        return self.head.envelope(CHUNK_OBJECT, [choice], None)

    def _deltas(self, index: int, parsed: ChatDelta) -> list[dict[str, Any]]:
        deltas: list[dict[str, Any]] = []
        if parsed.reasoning:
            deltas.append({"reasoning_content": parsed.reasoning})
        if parsed.content:
            deltas.append({"content": parsed.content})
        for call in parsed.calls:
            deltas.extend(self._call_deltas(index, call))
        return deltas

    def _call_deltas(self, index: int, call: ParsedCall) -> list[dict[str, Any]]:
        k = self._calls.get(index, 0)
        self._calls[index] = k + 1
        opening = {
            "index": k,
            "id": call_id(self.head, index, k),
            "type": "function",
            "function": {"name": call.name, "arguments": ""},
        }
        arguments = {"index": k, "function": {"arguments": call.arguments}}
        return [{"tool_calls": [opening]}, {"tool_calls": [arguments]}]

    def chunks(self, upd: Update) -> list[dict[str, Any]]:
        out = []
        if upd.index not in self._parsers:
            self._parsers[upd.index] = ChoiceParser(self.options)
            out.append(self._chunk(upd.index, {"role": "assistant", "content": ""}, None, None))
        lp = None
        if self.top_logprobs is not None:
            lp = chat_logprobs(upd.logprobs, self.token_text, self.top_logprobs)
        parser = self._parsers[upd.index]
        parsed = parser.feed(upd.text, upd.token_ids)
        if upd.finished:
            parsed.extend(parser.finish())
        deltas = self._deltas(upd.index, parsed)
        if not deltas and (upd.finished or upd.logprobs):
            deltas = [{}]
        reason = _reason(upd.finish_reason, self._calls.get(upd.index, 0) > 0)
        for n, delta in enumerate(deltas):
            last = n == len(deltas) - 1
            out.append(
                self._chunk(upd.index, delta, lp if n == 0 else None, reason if last else None)
            )
        return out

    def usage_chunk(
        self, created: int, prompt_tokens: int, completion_tokens: int
    ) -> dict[str, Any]:
        return usage_chunk(self.head, CHUNK_OBJECT, created, prompt_tokens, completion_tokens)
