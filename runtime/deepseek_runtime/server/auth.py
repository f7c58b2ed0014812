"""API keys and per-key rate limits.

Keys come from a file (one per line, ``#`` comments; as mounted from a Kubernetes Secret)
and/or a comma-separated environment value. Only their SHA-256 digests are kept; a
presented key is hashed and compared against every digest with ``hmac.compare_digest`` so
the time taken does not depend on which key (or how much of one) matched. A key's id in
logs is the first 12 hex digits of its digest. Each key gets two token buckets: requests
per second and tokens per minute. Used by ``server.app`` before any work is done.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

ANONYMOUS = "anonymous"


def key_digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def key_id(digest: bytes) -> str:
    return digest.hex()[:12]


def read_keys(path: Path | None, inline: str | None) -> list[str]:
    """Keys from the file and the inline list; ValueError when the file is unreadable."""
    keys: list[str] = []
    if path is not None:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ValueError(f"cannot read API keys file {path}: {exc.strerror}") from None
        keys += [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    if inline:
        keys += [k.strip() for k in inline.split(",") if k.strip()]
    return keys


class KeyStore:
    """Hashed API keys; ``enabled`` is False when none are configured (open server)."""

    def __init__(self, keys: Iterable[str]) -> None:
        self._digests = [key_digest(k) for k in keys]

    @property
    def enabled(self) -> bool:
        return bool(self._digests)

    def identify(self, presented: str | None) -> str | None:
        """The key id of a valid key, else None. Constant time in which key matched."""
        if not self._digests:
            return ANONYMOUS
        candidate = key_digest(presented or "")
        match: bytes | None = None
        for digest in self._digests:
            if hmac.compare_digest(candidate, digest):
                match = digest
        return key_id(match) if match is not None and presented else None


@dataclass(slots=True)
class TokenBucket:
    """``rate`` units per second, holding at most ``capacity``; may go into debt."""

    rate: float
    capacity: float
    clock: Callable[[], float] = time.monotonic
    level: float = field(default=-1.0)
    stamp: float = field(default=-1.0)

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.capacity <= 0:
            raise ValueError("token bucket rate and capacity must be > 0")
        self.level = self.capacity
        self.stamp = self.clock()

    def _refill(self) -> None:
        now = self.clock()
        self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
        self.stamp = now

    def try_take(self, amount: float) -> float:
        """Take ``amount`` (capped at capacity) and return 0, or return seconds to wait."""
        self._refill()
        need = min(amount, self.capacity)
        if self.level >= need:
            self.level -= amount
            return 0.0
        return (need - self.level) / self.rate

    def charge(self, amount: float) -> None:
        """Take ``amount`` unconditionally (tokens generated after admission)."""
        self._refill()
        self.level -= amount


class RateLimiter:
    """Per-key request and token buckets; None limits mean unlimited."""

    def __init__(
        self, rps: float | None, tpm: int | None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._rps = rps
        self._tpm = tpm
        self._clock = clock
        self._req: dict[str, TokenBucket] = {}
        self._tok: dict[str, TokenBucket] = {}

    def admit(self, key: str, tokens: int) -> int:
        """0 when admitted, else whole seconds for Retry-After. Charges ``tokens`` on admit."""
        wait = 0.0
        req = tok = None
        if self._rps is not None:
            req = self._req.get(key) or self._req.setdefault(
                key, TokenBucket(self._rps, max(1.0, self._rps), self._clock)
            )
            wait = max(wait, _peek(req, 1))
        if self._tpm is not None:
            tok = self._tok.get(key) or self._tok.setdefault(
                key, TokenBucket(self._tpm / 60.0, float(self._tpm), self._clock)
            )
            wait = max(wait, _peek(tok, tokens))
        if wait > 0:
            return max(1, math.ceil(wait))
        if req is not None:
            req.try_take(1)
        if tok is not None:
            tok.try_take(tokens)
        return 0

    def charge_tokens(self, key: str, tokens: int) -> None:
        bucket = self._tok.get(key)
        if bucket is not None and tokens > 0:
            bucket.charge(tokens)


def _peek(bucket: TokenBucket, amount: float) -> float:
    bucket._refill()
    need = min(amount, bucket.capacity)
    return 0.0 if bucket.level >= need else (need - bucket.level) / bucket.rate
