"""Audit log: one JSON line per API request.

Fields: time (RFC 3339, UTC), request_id, key_id (a hash prefix, never the key), model,
endpoint, status, prompt_tokens, completion_tokens, latency_ms, finish_reason. Prompt text
is absent unless prompt logging is switched on, and then e-mail addresses, phone numbers
and card numbers are redacted first. Written by ``server.app`` after each request.
"""

from __future__ import annotations

import json
import re
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
_CARD = re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")
_PHONE = re.compile(
    r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{2,4}\)[ .-]?)?\d{2,4}[ .-]\d{3,4}[ .-]?\d{0,4}(?!\d)"
)


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _card(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    return "[CARD]" if 13 <= len(digits) <= 19 and _luhn_ok(digits) else match.group(0)


def redact_pii(text: str) -> str:
    """Replace e-mail addresses, card numbers (Luhn-valid) and phone numbers."""
    text = _EMAIL.sub("[EMAIL]", text)
    text = _CARD.sub(_card, text)
    return _PHONE.sub(
        lambda m: "[PHONE]" if sum(c.isdigit() for c in m.group(0)) >= 7 else m.group(0), text
    )


class AuditLog:
    """Thread-safe JSON-lines writer; ``path`` '-' means stdout."""

    def __init__(self, path: str, *, log_prompts: bool = False) -> None:
        self.log_prompts = log_prompts
        self._lock = threading.Lock()
        self._own = path != "-"
        self._stream: IO[str] = (
            open(Path(path), "a", encoding="utf-8", buffering=1) if self._own else sys.stdout  # noqa: SIM115
        )

    def record(self, *, prompt: str | None = None, **fields: Any) -> None:
        entry: dict[str, Any] = {"time": datetime.now(UTC).isoformat(timespec="milliseconds")}
        entry.update(fields)
        if self.log_prompts and prompt is not None:
            entry["prompt"] = redact_pii(prompt)
        line = json.dumps(entry, ensure_ascii=False, separators=(",", ":"))
        with self._lock:
            self._stream.write(line + "\n")
            self._stream.flush()

    def close(self) -> None:
        if self._own:
            self._stream.close()
