"""Incremental detokenization that never emits a broken UTF-8 character.

Called by :mod:`deepseek_runtime.engine.output_processor`, one instance per request.

Byte-level BPE tokens can end in the middle of a multi-byte character; decoding such a
prefix yields U+FFFD. We decode a short window of tokens twice — up to the last emitted
token, and up to the newest — and emit the difference only when it does not end in
U+FFFD; otherwise we wait for more tokens::

    ids:  ... [prefix_offset ........ read_offset) [new tokens ...]
               \\_ context (already emitted) _/     \\_ emitted once complete _/

The context tokens matter for tokenizers whose decoders strip a leading space. When the
request finishes, :meth:`IncrementalDetokenizer.flush` releases what was held back, so the
whole text is what decoding every generated token gives (U+FFFD for bytes that never
completed a character), streamed or not.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

REPLACEMENT = "\ufffd"
_CONTEXT_TOKENS = 5


class TokenDecoder(Protocol):
    """The slice of ``tokenizers.Tokenizer`` the detokenizer uses."""

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str: ...


class IncrementalDetokenizer:
    """Turns a stream of token ids into a stream of complete-character text deltas."""

    def __init__(
        self,
        tokenizer: TokenDecoder,
        prompt_token_ids: Sequence[int],
        *,
        skip_special_tokens: bool = True,
    ) -> None:
        self._tokenizer = tokenizer
        self._skip = skip_special_tokens
        self._ids = list(prompt_token_ids[-_CONTEXT_TOKENS:])
        self._prefix_offset = 0
        self._read_offset = len(self._ids)

    def _decode(self, ids: list[int]) -> str:
        if not ids:
            return ""
        return self._tokenizer.decode(ids, skip_special_tokens=self._skip)

    def add_tokens(self, token_ids: Sequence[int]) -> str:
        """Append generated tokens; return the newly completed text (maybe empty)."""
        self._ids.extend(token_ids)
        prefix = self._decode(self._ids[self._prefix_offset : self._read_offset])
        full = self._decode(self._ids[self._prefix_offset :])
        if len(full) <= len(prefix) or full.endswith(REPLACEMENT):
            return ""
        delta = full[len(prefix) :]
        self._prefix_offset = self._read_offset
        self._read_offset = len(self._ids)
        # Keep the window short: drop context older than what the next decode needs.
        if self._prefix_offset > 4 * _CONTEXT_TOKENS:
            drop = self._prefix_offset - _CONTEXT_TOKENS
            del self._ids[:drop]
            self._prefix_offset -= drop
            self._read_offset -= drop
        return delta

    def flush(self) -> str:
        """The held-back tail, U+FFFD included: call once, when the request finishes."""
        prefix = self._decode(self._ids[self._prefix_offset : self._read_offset])
        full = self._decode(self._ids[self._prefix_offset :])
        self._prefix_offset = self._read_offset = len(self._ids)
        if len(full) <= len(prefix):
            return ""
        return full[len(prefix) :]
