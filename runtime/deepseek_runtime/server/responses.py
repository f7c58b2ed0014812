"""OpenAI response and stream-chunk bodies, as plain dicts (fast to serialise).

Shapes follow OpenAI's ``text_completion``, ``chat.completion`` and
``chat.completion.chunk`` objects, including both logprob formats (the legacy
completions one and chat's ``content`` list). Used by ``server.openai_routes``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..engine.api import TokenLogprob

TokenText = Callable[[int], str]


def sse(data: dict[str, Any]) -> bytes:
    body = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()
    return b"data: " + body + b"\n\n"


SSE_DONE = b"data: [DONE]\n\n"


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def completion_logprobs(
    items: list[TokenLogprob], token_text: TokenText, offset: int
) -> dict[str, Any]:
    """Legacy completions format; ``offset`` is the text offset of the first token."""
    tokens, lps, tops, offsets = [], [], [], []
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


def chat_logprobs(items: list[TokenLogprob], token_text: TokenText, top_n: int) -> dict[str, Any]:
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

    text: list[str] = field(default_factory=list)
    logprobs: list[TokenLogprob] = field(default_factory=list)
    finish_reason: str | None = None


def completion_body(  # noqa: PLR0917
    rid: str,
    created: int,
    model: str,
    choices: list[ChoiceBuffer],
    token_text: TokenText,
    want_logprobs: bool,
    prefix: list[str],
    prompt_tokens: int,
    completion_tokens: int,
) -> dict[str, Any]:
    out = []
    for i, ch in enumerate(choices):
        text = "".join(ch.text)
        lp = completion_logprobs(ch.logprobs, token_text, len(prefix[i])) if want_logprobs else None
        out.append(
            {
                "index": i,
                "text": prefix[i] + text,
                "logprobs": lp,
                "finish_reason": ch.finish_reason,
            }
        )
    return {
        "id": rid,
        "object": "text_completion",
        "created": created,
        "model": model,
        "choices": out,
        "usage": usage(prompt_tokens, completion_tokens),
    }


def chat_body(  # noqa: PLR0917
    rid: str,
    created: int,
    model: str,
    choices: list[ChoiceBuffer],
    token_text: TokenText,
    top_logprobs: int | None,
    prompt_tokens: int,
    completion_tokens: int,
) -> dict[str, Any]:
    out = []
    for i, ch in enumerate(choices):
        lp = None
        if top_logprobs is not None:
            lp = chat_logprobs(ch.logprobs, token_text, top_logprobs)
        out.append(
            {
                "index": i,
                "message": {"role": "assistant", "content": "".join(ch.text)},
                "logprobs": lp,
                "finish_reason": ch.finish_reason,
            }
        )
    return {
        "id": rid,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": out,
        "usage": usage(prompt_tokens, completion_tokens),
    }


def completion_chunk(  # noqa: PLR0917
    rid: str,
    created: int,
    model: str,
    index: int,
    text: str,
    logprobs: dict[str, Any] | None,
    finish_reason: str | None,
) -> dict[str, Any]:
    return {
        "id": rid,
        "object": "text_completion",
        "created": created,
        "model": model,
        "choices": [
            {"index": index, "text": text, "logprobs": logprobs, "finish_reason": finish_reason}
        ],
        "usage": None,
    }


def chat_chunk(  # noqa: PLR0917
    rid: str,
    created: int,
    model: str,
    index: int,
    delta: dict[str, Any],
    logprobs: dict[str, Any] | None,
    finish_reason: str | None,
) -> dict[str, Any]:
    return {
        "id": rid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [
            {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish_reason}
        ],
        "usage": None,
    }


def usage_chunk(  # noqa: PLR0917
    rid: str, created: int, model: str, obj: str, prompt_tokens: int, completion_tokens: int
) -> dict[str, Any]:
    return {
        "id": rid,
        "object": obj,
        "created": created,
        "model": model,
        "choices": [],
        "usage": usage(prompt_tokens, completion_tokens),
    }
