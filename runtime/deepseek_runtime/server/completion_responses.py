"""``/v1/completions`` answers: the whole ``text_completion`` object and its stream chunks.

Both take the per-choice ``prefixes`` (the echoed prompt with ``echo``, else ``""``): the
prefix leads the choice's text and shifts its logprob ``text_offset``\\ s. Pure: built by
``server.openai_routes``, driven by ``server.driver``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .generation import Update
from .preparation import EchoScoring
from .responses import (
    ChoiceBuffer,
    ResponseHead,
    TokenText,
    completion_logprobs,
    echo_logprobs,
    join_logprobs,
    usage,
    usage_chunk,
)

OBJECT = "text_completion"


def _choice(
    index: int, text: str, logprobs: dict[str, Any] | None, reason: str | None
) -> dict[str, Any]:
    return {"index": index, "text": text, "logprobs": logprobs, "finish_reason": reason}


@dataclass(frozen=True, slots=True)
class CompletionBody:
    """The non-streamed answer: each choice's prefix and text, in choice order."""

    head: ResponseHead
    token_text: TokenText
    prefixes: Sequence[str]
    logprobs: bool
    echo: EchoScoring | None = None

    def body(
        self, choices: Sequence[ChoiceBuffer], prompt_tokens: int, completion_tokens: int
    ) -> dict[str, Any]:
        out = []
        echo = self.echo
        score_only = echo is not None and echo.score_only
        for i, ch in enumerate(choices):
            prefix = self.prefixes[i]
            lp = None
            if self.logprobs:
                lp = completion_logprobs(
                    [] if score_only else ch.logprobs, self.token_text, len(prefix)
                )
            if echo is not None and echo.logprobs and lp is not None:
                head = echo_logprobs(echo.prompt_ids[i], ch.prompt_logprobs, self.token_text)
                lp = join_logprobs(head, lp)
            text = prefix if score_only else prefix + "".join(ch.text)
            out.append(_choice(i, text, lp, "length" if score_only else ch.finish_reason))
        if score_only:
            completion_tokens = 0
        return self.head.envelope(OBJECT, out, usage(prompt_tokens, completion_tokens))


@dataclass(slots=True)
class CompletionChunks:
    """The streamed answer: one chunk per non-empty delta; a choice's prefix leads its first.

    Keeps each choice's text offset so that logprob offsets run on across chunks.
    """

    head: ResponseHead
    token_text: TokenText
    prefixes: Sequence[str]
    logprobs: bool
    echo: EchoScoring | None = None
    _offsets: list[int] = field(init=False)
    _started: set[int] = field(init=False, default_factory=set)

    def __post_init__(self) -> None:
        self._offsets = [len(p) for p in self.prefixes]

    def chunks(self, upd: Update) -> list[dict[str, Any]]:
        i = upd.index
        lp = None
        echo = self.echo
        if self.logprobs:
            lp = completion_logprobs(upd.logprobs, self.token_text, self._offsets[i])
            if echo is not None and echo.logprobs and i not in self._started:
                head = echo_logprobs(echo.prompt_ids[i], upd.prompt_logprobs, self.token_text)
                lp = join_logprobs(head, lp)
        self._offsets[i] += len(upd.text)
        text = upd.text
        if i not in self._started:
            self._started.add(i)
            text = self.prefixes[i] + text
        if not text and not upd.finished and not upd.logprobs:
            return []
        return [self.head.envelope(OBJECT, [_choice(i, text, lp, upd.finish_reason)], None)]

    def usage_chunk(
        self, created: int, prompt_tokens: int, completion_tokens: int
    ) -> dict[str, Any]:
        return usage_chunk(self.head, OBJECT, created, prompt_tokens, completion_tokens)
