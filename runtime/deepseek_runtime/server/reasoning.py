"""DeepSeek-R1's ``<think>…</think>`` block, split off the answer (``--reasoning-parser``).

R1 (and its distills) write their chain of thought before the answer::

    [<think>] reasoning ... </think> answer

Their chat templates open ``<think>`` in the prompt, so the output usually starts inside
the block and carries only the closing ``</think>``; a leading ``<think>`` the model
writes itself is dropped. Everything up to ``</think>`` is ``reasoning_content``, the rest
``content``, as DeepSeek's API and vLLM's ``deepseek_r1`` parser return them; output that
never closes the block is all reasoning (it was cut short while thinking).

Streaming sees the text in arbitrary pieces, so a tail that could still grow into
``</think>`` is held back until the next piece decides it. Checkpoints whose tokenizer
marks ``</think>`` as a special token drop it from decoded text; the parser then also
ends the block when that token's id arrives. Pure: one :class:`ReasoningSplitter` per
choice, driven by ``server.chat_output``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

THINK_START = "<think>"
THINK_END = "</think>"
PARSERS = ("deepseek_r1",)


def partial_suffix(text: str, marker: str) -> int:
    """Length of the longest tail of ``text`` that is a proper prefix of ``marker``."""
    for k in range(min(len(text), len(marker) - 1), 0, -1):
        if marker.startswith(text[-k:]):
            return k
    return 0


@dataclass(frozen=True, slots=True)
class Split:
    """One piece of output, divided: either part may be empty."""

    reasoning: str = ""
    content: str = ""


class ReasoningSplitter:
    """Streams one choice's output into reasoning and content pieces."""

    def __init__(self, end_token_id: int | None = None) -> None:
        self._end_id = end_token_id
        self._held = ""  # text not yet assigned: a possible start of a marker
        self._started = False  # past a possible leading ``<think>``
        self.in_reasoning = True

    def feed(self, text: str, token_ids: Sequence[int] = ()) -> Split:
        """Split the next piece; ``token_ids`` are the tokens it was decoded from."""
        if not self.in_reasoning:
            return Split(content=text)
        buf = self._held + text
        self._held = ""
        if not self._started:
            if THINK_START.startswith(buf) and len(buf) < len(THINK_START):
                self._held = buf  # could still become a leading "<think>"
                return Split()
            self._started = True
            stripped = buf.lstrip()
            if stripped.startswith(THINK_START):
                buf = stripped[len(THINK_START) :]
        end = buf.find(THINK_END)
        if end >= 0:
            self.in_reasoning = False
            return Split(buf[:end], buf[end + len(THINK_END) :])
        if self._end_id is not None and self._end_id in token_ids:
            # the closing token decoded to nothing (a special token): the block ends here
            self.in_reasoning = False
            return Split(buf)
        keep = partial_suffix(buf, THINK_END)
        if keep:
            self._held = buf[-keep:]
            buf = buf[:-keep]
        return Split(reasoning=buf)

    def finish(self) -> Split:
        """The output ended: whatever was held back was reasoning after all."""
        held, self._held = self._held, ""
        if not self.in_reasoning:
            return Split(content=held)
        return Split(reasoning=held)


def split_reasoning(text: str, end_token_id: int | None = None) -> tuple[str, str]:
    """Whole output → ``(reasoning, content)``; the same answer streaming would give."""
    splitter = ReasoningSplitter(end_token_id)
    first, last = splitter.feed(text), splitter.finish()
    return first.reasoning + last.reasoning, first.content + last.content
