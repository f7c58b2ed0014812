"""Stop-string matching over streamed text, holding back a possible partial match.

Called by :mod:`deepseek_runtime.engine.output_processor`, one instance per request.
Text that could be the start of a stop string is held back until it is resolved::

    stop = "###"     text so far: "answer: 42 #"   -> emit "answer: 42 ", hold "#"
                     next delta:  "##"             -> stop found, emit nothing more
"""

from __future__ import annotations

from collections.abc import Sequence


class StopStringMatcher:
    """Accumulates generated text and reports what may be emitted."""

    def __init__(self, stops: Sequence[str]) -> None:
        self._stops = tuple(stops)
        self._max_len = max((len(s) for s in self._stops), default=0)
        self.text = ""
        self._emitted = 0
        self.stopped = False

    def add(self, delta: str) -> str:
        """Add new text; return the text now safe to emit. Sets ``stopped`` on a match
        (the stop string and anything after it are dropped)."""
        if self.stopped:
            return ""
        old_len = len(self.text)
        self.text += delta
        if not self._stops:
            return self._take(len(self.text))
        search_from = max(0, old_len - self._max_len + 1)
        hits = [i for s in self._stops if (i := self.text.find(s, search_from)) >= 0]
        if hits:
            self.text = self.text[: min(hits)]
            self.stopped = True
            return self._take(len(self.text))
        return self._take(len(self.text) - self._held_back())

    def flush(self) -> str:
        """Everything not yet emitted (call when the request ends for another reason)."""
        return self._take(len(self.text))

    def _held_back(self) -> int:
        """Length of the longest text suffix that is a proper prefix of a stop string."""
        for k in range(min(self._max_len - 1, len(self.text)), 0, -1):
            tail = self.text[-k:]
            if any(s.startswith(tail) for s in self._stops):
                return k
        return 0

    def _take(self, end: int) -> str:
        end = max(end, self._emitted)
        out = self.text[self._emitted : end]
        self._emitted = end
        return out
