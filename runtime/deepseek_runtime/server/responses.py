"""The pieces every OpenAI response shares: SSE framing, usage, logprob formats, buffers.

Response bodies are plain dicts (fast to serialise). The four renderers built from these
pieces live beside this module: ``server.completion_responses`` (``text_completion``,
whole and streamed) and ``server.chat_responses`` (``chat.completion`` and
``chat.completion.chunk``). :class:`WholeRenderer` and :class:`StreamRenderer` are the two
shapes ``server.driver`` drives. Everything here is pure: no clock, no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..engine.api import TokenLogprob
from .generation import Update

TokenText = Callable[[int], str]
"""Text of one token id as OpenAI's logprobs show it (``ServerTokenizer.token_text``)."""

SSE_DONE = b"data: [DONE]\n\n"


def sse(data: dict[str, Any]) -> bytes:
    """One Server-Sent Event carrying ``data`` as compact JSON."""
    body = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()
    return b"data: " + body + b"\n\n"


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


@dataclass(frozen=True, slots=True)
class ResponseHead:
    """What every object of one answer repeats: its id, creation time and model name."""

    request_id: str
    created: int  # Unix seconds, read once by the route
    model: str

    def envelope(self, obj: str, choices: list[dict[str, Any]], use: Any) -> dict[str, Any]:
        """An OpenAI object of type ``obj``; ``use`` is the usage dict or ``None``."""
        return {
            "id": self.request_id,
            "object": obj,
            "created": self.created,
            "model": self.model,
            "choices": choices,
            "usage": use,
        }


def usage_chunk(
    head: ResponseHead, obj: str, created: int, prompt_tokens: int, completion_tokens: int
) -> dict[str, Any]:
    """The last chunk of a stream with ``include_usage``: no choices, only usage.

    ``created`` is read when the stream ends (as vLLM does), not the head's time.
    """
    chunk = head.envelope(obj, [], usage(prompt_tokens, completion_tokens))
    chunk["created"] = created
    return chunk


def completion_logprobs(
    items: Sequence[TokenLogprob], token_text: TokenText, offset: int
) -> dict[str, Any]:
    """Legacy completions format; ``offset`` is the text offset of the first token."""
    tokens: list[str] = []
    lps: list[float | None] = []
    tops: list[dict[str, float] | None] = []
    offsets: list[int] = []
    for item in items:
        text = token_text(item.token_id)
        tokens.append(text)
        lps.append(item.logprob)
        top: dict[str, float] = {}
        for tid, lp in item.top:
            top.setdefault(token_text(tid), lp)
        tops.append(top)
        offsets.append(offset)
        offset += len(text)
    return {"tokens": tokens, "token_logprobs": lps, "top_logprobs": tops, "text_offset": offsets}


def echo_logprobs(
    prompt_ids: Sequence[int],
    items: Sequence[TokenLogprob | None] | None,
    token_text: TokenText,
) -> dict[str, Any]:
    """The echoed prompt's entries (``echo`` with ``logprobs``): its first token has no
    logprob (``null`` logprob and top), as vLLM's ``prompt_logprobs`` and OpenAI report."""
    rest = [i for i in (items or [])[1:] if i is not None]
    out = completion_logprobs(rest, token_text, 0)
    first = token_text(prompt_ids[0]) if prompt_ids else ""
    shift = len(first)
    return {
        "tokens": [first, *out["tokens"]],
        "token_logprobs": [None, *out["token_logprobs"]],
        "top_logprobs": [None, *out["top_logprobs"]],
        "text_offset": [0, *(o + shift for o in out["text_offset"])],
    }


def join_logprobs(head: dict[str, Any], tail: dict[str, Any]) -> dict[str, Any]:
    return {key: head[key] + tail[key] for key in head}


def chat_logprobs(
    items: Sequence[TokenLogprob], token_text: TokenText, top_n: int
) -> dict[str, Any]:
    """Chat format: a ``content`` list with each token's bytes and its ``top_n`` rivals."""
    content = []
    for item in items:
        text = token_text(item.token_id)
        content.append(
            {
                "token": text,
                "logprob": item.logprob,
                "bytes": list(text.encode("utf-8")),
                "top_logprobs": [
                    {
                        "token": (t := token_text(tid)),
                        "logprob": lp,
                        "bytes": list(t.encode("utf-8")),
                    }
                    for tid, lp in item.top[:top_n]
                ],
            }
        )
    return {"content": content}


@dataclass(slots=True)
class ChoiceBuffer:
    """Accumulates one choice for a non-streamed answer."""

    text: list[str] = field(default_factory=list)  # one piece per update
    token_ids: list[list[int]] = field(default_factory=list)  # the tokens of each piece
    logprobs: list[TokenLogprob] = field(default_factory=list)
    finish_reason: str | None = None
    prompt_logprobs: list[TokenLogprob | None] | None = None

    def add(self, upd: Update) -> None:
        if upd.prompt_logprobs is not None:
            self.prompt_logprobs = upd.prompt_logprobs
        self.text.append(upd.text)
        self.token_ids.append(upd.token_ids)
        self.logprobs.extend(upd.logprobs)
        if upd.finished:
            self.finish_reason = upd.finish_reason


class WholeRenderer(Protocol):
    """Renders the one JSON body of a non-streamed answer."""

    def body(
        self, choices: Sequence[ChoiceBuffer], prompt_tokens: int, completion_tokens: int
    ) -> dict[str, Any]: ...


class StreamRenderer(Protocol):
    """Renders a stream's chunks; it may keep state from one update to the next."""

    def chunks(self, upd: Update) -> list[dict[str, Any]]:
        """The chunks one update becomes (none for an empty delta)."""
        ...

    def usage_chunk(
        self, created: int, prompt_tokens: int, completion_tokens: int
    ) -> dict[str, Any]: ...
