"""DeepSeek-V3's tool-call output, parsed into OpenAI ``tool_calls`` (``--tool-call-parser``).

DeepSeek-V3 (and R1-0528) answer a tool request with special tokens around each call::

    [content] <｜tool▁calls▁begin｜>
      <｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME\\n```json\\n{ARGS}\\n```<｜tool▁call▁end｜>
      ... more calls ...
    <｜tool▁calls▁end｜>

DeepSeek-V3.1 drops the ``function`` type and the code fence
(``<｜tool▁call▁begin｜>NAME<｜tool▁sep｜>{ARGS}<｜tool▁call▁end｜>``); both are read. The
arguments must be a JSON object; a call that is not well-formed (no separator, arguments
that do not parse, a name the request did not offer) makes the whole output plain
content again (calls already streamed before it stay), so a confused model never
becomes a 500.

Streaming holds the text back from the first ``<｜tool▁calls▁begin｜>`` (or a tail that may
grow into it) and emits each call once its ``<｜tool▁call▁end｜>`` has arrived and it
parses; when the output ends with the block still unparsed, the held text is released
as content. Pure: one :class:`ToolCallStream` per choice, driven by ``server.chat_output``.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass, field

from .reasoning import partial_suffix

CALLS_BEGIN = "<｜tool▁calls▁begin｜>"
CALLS_END = "<｜tool▁calls▁end｜>"
CALL_BEGIN = "<｜tool▁call▁begin｜>"
CALL_END = "<｜tool▁call▁end｜>"
SEP = "<｜tool▁sep｜>"
PARSERS = ("deepseek_v3",)
_FENCE_OPEN = "```json"
_FENCE_CLOSE = "```"


@dataclass(frozen=True, slots=True)
class ParsedCall:
    name: str
    arguments: str  # compact JSON object text


class MalformedCallError(ValueError):
    """The text between a call's markers is not a call this request allows."""


def _arguments(raw: str) -> str:
    text = raw.strip()
    if text.startswith(_FENCE_OPEN):
        text = text[len(_FENCE_OPEN) :]
        if not text.rstrip().endswith(_FENCE_CLOSE):
            raise MalformedCallError("unclosed code fence")
        text = text.rstrip()[: -len(_FENCE_CLOSE)]
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MalformedCallError(f"arguments are not JSON: {exc.msg}") from None
    if not isinstance(value, dict):
        raise MalformedCallError("arguments must be a JSON object")
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def parse_call(body: str, allowed: Collection[str]) -> ParsedCall:
    """One call's text (between its begin and end markers) → name and JSON arguments."""
    head, sep, rest = body.partition(SEP)
    if not sep:
        raise MalformedCallError("no tool separator")
    if head.strip() == "function":  # V3: function<sep>NAME\n```json ... ```
        name, _, raw = rest.partition("\n")
    else:  # V3.1: NAME<sep>ARGS
        name, raw = head, rest
    name = name.strip()
    if name not in allowed:
        raise MalformedCallError(f"no tool named {name!r} was offered")
    return ParsedCall(name, _arguments(raw))


@dataclass(slots=True)
class ToolEvents:
    """What one piece of output produced: content to emit and completed calls."""

    content: str = ""
    calls: list[ParsedCall] = field(default_factory=list)


class ToolCallStream:
    """Streams one choice's answer, lifting DeepSeek tool calls out of it."""

    def __init__(self, allowed: Collection[str]) -> None:
        self._allowed = allowed
        self._pending = ""  # content that may be the start of CALLS_BEGIN
        self._block: str | None = None  # text after CALLS_BEGIN not yet parsed into calls
        self.failed = False
        self.calls: list[ParsedCall] = []

    def feed(self, text: str) -> ToolEvents:
        if self.failed:
            return ToolEvents(content=text)
        if self._block is not None:
            return self._take_calls(text)
        buf = self._pending + text
        start = buf.find(CALLS_BEGIN)
        if start < 0:
            keep = partial_suffix(buf, CALLS_BEGIN)
            self._pending = buf[len(buf) - keep :]
            return ToolEvents(content=buf[: len(buf) - keep])
        self._pending, self._block = "", ""
        out = self._take_calls(buf[start + len(CALLS_BEGIN) :])
        out.content = buf[:start] + out.content
        return out

    def _unparsed(self) -> str:
        """The block's text not yet taken as calls, as the model wrote it."""
        return ("" if self.calls else CALLS_BEGIN) + (self._block or "")

    def _take_calls(self, text: str) -> ToolEvents:
        self._block = (self._block or "") + text
        out = ToolEvents()
        while True:
            begin = self._block.find(CALL_BEGIN)
            end = self._block.find(CALL_END)
            if begin < 0 or end < begin:
                return out
            try:
                call = parse_call(self._block[begin + len(CALL_BEGIN) : end], self._allowed)
            except MalformedCallError:
                # calls already sent stay; from the bad one on, the block is content
                self.failed = True
                out.content = self._unparsed()
                self._block = ""
                return out
            out.calls.append(call)
            self.calls.append(call)
            self._block = self._block[end + len(CALL_END) :]

    def finish(self) -> ToolEvents:
        """The output ended: release held text; a block with no complete call is content."""
        if self._block is None:
            held, self._pending = self._pending, ""
            return ToolEvents(content=held)
        if self.failed or self.calls:
            return ToolEvents()  # what follows the last call is the closing markers
        self.failed = True
        return ToolEvents(content=self._unparsed())


def parse_tool_calls(text: str, allowed: Collection[str]) -> tuple[str, list[ParsedCall]]:
    """Whole answer → ``(content, calls)``: exactly what streaming it would give."""
    stream = ToolCallStream(allowed)
    first = stream.feed(text)
    last = stream.finish()
    return first.content + last.content, stream.calls
