"""Well-behaved clients whose latency the suites measure while something attacks the server.

``Victims`` keeps a few clients sending small completions back to back and records each
latency and status; the suites compare a quiet period with an attack period. Also the
percentile helper the reports use.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def small_completion(model: str, tag: str, max_tokens: int = 4) -> dict[str, Any]:
    return {"model": model, "prompt": f"probe {tag}", "max_tokens": max_tokens, "ignore_eos": True}


@dataclass
class VictimStats:
    latencies_s: list[float] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)

    def summary(self) -> dict[str, Any]:
        return {
            "requests": len(self.latencies_s),
            "statuses": dict(self.statuses),
            "p50_s": _round(percentile(self.latencies_s, 50)),
            "p99_s": _round(percentile(self.latencies_s, 99)),
        }


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


class Victims:
    """``clients`` loops of small completions until stopped; one :class:`VictimStats`."""

    def __init__(
        self, url: str, model: str, headers: dict[str, str] | None = None, clients: int = 2
    ) -> None:
        self.url, self.model, self.headers, self.clients = url, model, headers or {}, clients
        self.stats = VictimStats()
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def _loop(self, index: int) -> None:
        async with httpx.AsyncClient(base_url=self.url, headers=self.headers, timeout=60) as c:
            n = 0
            while not self._stop.is_set():
                n += 1
                started = time.perf_counter()
                try:
                    r = await c.post("/v1/completions", json=small_completion(self.model, f"{n}"))
                    status = str(r.status_code)
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                self.stats.latencies_s.append(time.perf_counter() - started)
                self.stats.statuses[status] += 1

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._loop(i)) for i in range(self.clients)]

    async def stop(self) -> VictimStats:
        self._stop.set()
        await asyncio.gather(*self._tasks)
        return self.stats


async def measure_quiet(
    url: str, model: str, seconds: float, headers: dict[str, str] | None = None
) -> VictimStats:
    """Victim latencies with nothing else going on (the baseline)."""
    victims = Victims(url, model, headers)
    victims.start()
    await asyncio.sleep(seconds)
    return await victims.stop()
