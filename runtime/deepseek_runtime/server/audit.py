"""Audit log: one JSON line per API request.

Fields: ``time`` (RFC 3339, UTC), ``request_id``, ``principal`` (the roles-file name, or
``key:<id>`` / ``jwt:<sub>`` / ``anonymous``), ``key_id`` (a hash prefix, never the key),
``subject`` (a JWT's ``sub``), ``model``, ``endpoint``, ``status``, ``prompt_tokens``,
``completion_tokens``, ``latency_ms``, ``finish_reason``. Refused requests (401, 403, 429,
400, 413) get a line too, with the principal when it was known.

Prompt text is absent unless ``--log-prompts`` is on. That switch is sensitive: even
redacted, prompts are user content; when on, :func:`server.pii.redact` replaces e-mail
addresses, phone numbers (with mainland-China mobiles), card numbers (Luhn), resident ID
numbers (check digit), IP addresses and API-key-like strings before the line is written,
and keeps the first :data:`PROMPT_CHARS` characters.

Written by ``server.middleware`` (HTTP, after the last byte) and ``server.state`` (gRPC).
"""

from __future__ import annotations

import json
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from .pii import redact

redact_pii = redact  # the name older callers and tests import

PROMPT_CHARS = 16384
"""Most prompt characters an audit line keeps (redaction runs on the line's path)."""
_OVERLAP = 256  # redacted past the cut, so PII straddling it is not left half-visible


def audit_prompt(prompt: str) -> str:
    """``prompt`` redacted, cut to :data:`PROMPT_CHARS` (marked when cut)."""
    if len(prompt) <= PROMPT_CHARS:
        return redact(prompt)
    return redact(prompt[: PROMPT_CHARS + _OVERLAP])[:PROMPT_CHARS] + " [truncated]"


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
            entry["prompt"] = audit_prompt(prompt)
        line = json.dumps(entry, ensure_ascii=False, separators=(",", ":"))
        with self._lock:
            self._stream.write(line + "\n")
            self._stream.flush()

    def close(self) -> None:
        if self._own:
            self._stream.close()
