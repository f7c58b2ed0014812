"""One chat choice's output, divided into reasoning, answer text and tool calls.

The order is the model's: an R1 model thinks first (``server.reasoning``), and only the
answer after ``</think>`` may hold DeepSeek tool calls (``server.tool_calls``)::

    update text ──ReasoningSplitter──► reasoning_content
                        └── answer ──ToolCallStream──► content, tool_calls

Whole answers are parsed by feeding every update through the same :class:`ChoiceParser`
a stream uses, so the two can never disagree. Pure: built per choice by
``server.chat_responses``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from .reasoning import ReasoningSplitter
from .tool_calls import ParsedCall, ToolCallStream


@dataclass(frozen=True, slots=True)
class ChatOutputOptions:
    """What the server and the request switched on for parsing a chat answer."""

    reasoning: bool = False  # --reasoning-parser deepseek_r1
    think_end_id: int | None = None  # ``</think>``'s token id, when it is one token
    tool_names: frozenset[str] | None = None  # parse calls to these; None: no tool parsing

    @property
    def parses(self) -> bool:
        return self.reasoning or self.tool_names is not None


NO_PARSING = ChatOutputOptions()


@dataclass(slots=True)
class ChatDelta:
    """What one piece of output adds to the message."""

    reasoning: str = ""
    content: str = ""
    calls: list[ParsedCall] = field(default_factory=list)

    def extend(self, other: ChatDelta) -> None:
        self.reasoning += other.reasoning
        self.content += other.content
        self.calls.extend(other.calls)


class ChoiceParser:
    """Feeds one choice's text pieces through the reasoning and tool-call parsers."""

    def __init__(self, options: ChatOutputOptions) -> None:
        self._reasoning = ReasoningSplitter(options.think_end_id) if options.reasoning else None
        names = options.tool_names
        self._tools = ToolCallStream(names) if names is not None else None

    def _answer(self, text: str, out: ChatDelta) -> None:
        if self._tools is None:
            out.content += text
            return
        events = self._tools.feed(text)
        out.content += events.content
        out.calls.extend(events.calls)

    def feed(self, text: str, token_ids: Sequence[int] = ()) -> ChatDelta:
        out = ChatDelta()
        if self._reasoning is None:
            self._answer(text, out)
            return out
        split = self._reasoning.feed(text, token_ids)
        out.reasoning = split.reasoning
        if split.content:
            self._answer(split.content, out)
        return out

    def finish(self) -> ChatDelta:
        """The choice ended: release whatever either parser still holds."""
        out = ChatDelta()
        if self._reasoning is not None:
            split = self._reasoning.finish()
            out.reasoning = split.reasoning
            if split.content:
                self._answer(split.content, out)
        if self._tools is not None:
            events = self._tools.finish()
            out.content += events.content
            out.calls.extend(events.calls)
        return out
