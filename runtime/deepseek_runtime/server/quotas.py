"""Per-principal request and token quotas: token buckets with reservations.

Each principal has up to three buckets, each created on first use from its
:class:`Limits` (and re-created when a roles reload changes them):

    rps   requests per second, burst max(1, rps)        (the ``--rate-limit-rps`` default)
    rpm   requests per minute, burst rpm                  (roles: ``requests_per_minute``)
    tpm   tokens per minute, burst tpm                    (roles / ``--rate-limit-tpm``)

Tokens are charged the way AIBrix's gateway does it: on admission the request reserves
its estimate (prompt tokens + ``max_tokens`` × choices); when it ends, :meth:`settle`
corrects the bucket by actual usage − estimate (a refund for a short answer, a charge for
a request that overran). A request is admitted when every bucket holds what it needs (at
most its capacity, so one big request can always pass a fresh bucket); otherwise nothing
is taken and the longest wait is returned for ``Retry-After``. A bucket may go into debt,
so an overrunning principal waits until the debt is repaid.

Pure apart from the injected clock; called by ``server.state`` (admit at start, settle at
the end).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class Limits:
    """A principal's limits; None means unlimited."""

    rps: float | None = None
    rpm: int | None = None
    tpm: int | None = None

    @property
    def unlimited(self) -> bool:
        return self.rps is None and self.rpm is None and self.tpm is None


@dataclass(slots=True)
class TokenBucket:
    """``rate`` units per second, holding at most ``capacity``; may go into debt."""

    rate: float
    capacity: float
    clock: Clock = time.monotonic
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

    def wait_for(self, amount: float) -> float:
        """Seconds until ``amount`` (capped at capacity) is available; 0 when it is now."""
        self._refill()
        need = min(amount, self.capacity)
        return 0.0 if self.level >= need else (need - self.level) / self.rate

    def try_take(self, amount: float) -> float:
        """Take ``amount`` and return 0, or take nothing and return seconds to wait."""
        wait = self.wait_for(amount)
        if wait == 0.0:
            self.level -= amount
        return wait

    def charge(self, amount: float) -> None:
        """Take (or, negative, give back) ``amount`` unconditionally; never above capacity."""
        self._refill()
        self.level = min(self.capacity, self.level - amount)


@dataclass(frozen=True, slots=True)
class Reservation:
    """What :meth:`QuotaLimiter.admit` charged, for :meth:`QuotaLimiter.settle`."""

    principal: str
    tokens: int


class QuotaLimiter:
    """Buckets per principal; limits are passed with every call (they may be reloaded)."""

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[tuple[str, str], tuple[float, TokenBucket]] = {}

    def _bucket(self, principal: str, kind: str, per_second: float, burst: float) -> TokenBucket:
        key = (principal, kind)
        held = self._buckets.get(key)
        if held is None or held[0] != per_second:
            held = (per_second, TokenBucket(per_second, burst, self._clock))
            self._buckets[key] = held
        return held[1]

    def _buckets_for(self, principal: str, limits: Limits) -> list[tuple[TokenBucket, bool]]:
        """(bucket, counts tokens) for each configured limit."""
        out: list[tuple[TokenBucket, bool]] = []
        if limits.rps is not None:
            out.append((self._bucket(principal, "rps", limits.rps, max(1.0, limits.rps)), False))
        if limits.rpm is not None:
            rpm = float(limits.rpm)
            out.append((self._bucket(principal, "rpm", rpm / 60.0, rpm), False))
        if limits.tpm is not None:
            tpm = float(limits.tpm)
            out.append((self._bucket(principal, "tpm", tpm / 60.0, tpm), True))
        return out

    def admit(self, principal: str, limits: Limits, tokens: int) -> tuple[int, Reservation]:
        """(0, reservation) when admitted, else (whole seconds for Retry-After, empty)."""
        buckets = self._buckets_for(principal, limits)
        wait = max((b.wait_for(tokens if t else 1) for b, t in buckets), default=0.0)
        if wait > 0:
            return max(1, math.ceil(wait)), Reservation(principal, 0)
        for bucket, counts_tokens in buckets:
            bucket.charge(tokens if counts_tokens else 1)
        return 0, Reservation(principal, tokens if limits.tpm is not None else 0)

    def settle(self, reservation: Reservation, limits: Limits, actual_tokens: int) -> None:
        """Correct the token bucket by ``actual_tokens`` − what was reserved."""
        if limits.tpm is None:
            return
        bucket = self._bucket(reservation.principal, "tpm", limits.tpm / 60.0, float(limits.tpm))
        bucket.charge(actual_tokens - reservation.tokens)
