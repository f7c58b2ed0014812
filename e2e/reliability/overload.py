"""Overload suite: many times the server's capacity for a while; only clean refusals.

Capacity is what the engine admits at once: ``max_num_seqs`` running plus ``max_waiting``
queued. ``factor`` × capacity closed-loop clients send completions (a mix of whole and
streamed answers) for ``seconds``; a refused client waits ``backoff`` seconds (less than
Retry-After, to keep the pressure on) and tries again. The report counts statuses,
refusals without ``Retry-After``, 5xx and transport errors, the p50/p99 latency of the
admitted requests, the server's resident memory (start, peak, end), and, once the load
stops, KV blocks still held and requests still running (both must be 0).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

from .probe import percentile
from .server import RuntimeServer

REFUSALS = frozenset({429, 503})


@dataclass
class OverloadReport:
    clients: int
    seconds: float
    statuses: Counter[str] = field(default_factory=Counter)
    refusals_without_retry_after: int = 0
    admitted_latencies_s: list[float] = field(default_factory=list)
    rss_start: int = 0
    rss_peak: int = 0
    rss_end: int = 0
    leaked_blocks: int = 0
    running_after: int = 0
    waiting_after: int = 0

    @property
    def server_errors(self) -> int:
        return sum(n for s, n in self.statuses.items() if s.isdigit() and int(s) >= 500) - sum(
            n for s, n in self.statuses.items() if s == "503"
        )

    @property
    def unexpected(self) -> dict[str, int]:
        """Anything but 200, 429 and 503 (5xx, other 4xx, transport errors)."""
        return {s: n for s, n in self.statuses.items() if s not in {"200", "429", "503"}}

    def to_json(self) -> dict[str, Any]:
        admitted = self.admitted_latencies_s
        return {
            "clients": self.clients,
            "seconds": self.seconds,
            "statuses": dict(self.statuses),
            "server_errors_5xx": self.server_errors,
            "unexpected": self.unexpected,
            "refusals_without_retry_after": self.refusals_without_retry_after,
            "admitted": len(admitted),
            "admitted_per_s": round(len(admitted) / self.seconds, 2),
            "admitted_p50_s": _r(percentile(admitted, 50)),
            "admitted_p99_s": _r(percentile(admitted, 99)),
            "rss_mib": {
                "start": self.rss_start >> 20,
                "peak": self.rss_peak >> 20,
                "end": self.rss_end >> 20,
            },
            "leaked_kv_blocks": self.leaked_blocks,
            "running_after": self.running_after,
            "waiting_after": self.waiting_after,
        }


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


async def _client(
    c: httpx.AsyncClient,
    model: str,
    index: int,
    *,
    stop_at: float,
    backoff: float,
    report: OverloadReport,
) -> None:
    n = 0
    while time.monotonic() < stop_at:
        n += 1
        stream = (index + n) % 2 == 0
        body = {
            "model": model,
            "prompt": f"overload {index} {n}",
            "max_tokens": 16,
            "ignore_eos": True,
            "stream": stream,
        }
        started = time.perf_counter()
        try:
            async with c.stream("POST", "/v1/completions", json=body) as r:
                async for _ in r.aiter_bytes():
                    pass
                status = r.status_code
                retry_after = r.headers.get("retry-after")
        except httpx.HTTPError as exc:
            report.statuses[type(exc).__name__] += 1
            await asyncio.sleep(backoff)
            continue
        report.statuses[str(status)] += 1
        if status == 200:
            report.admitted_latencies_s.append(time.perf_counter() - started)
        elif status in REFUSALS:
            if not retry_after:
                report.refusals_without_retry_after += 1
            await asyncio.sleep(backoff)


async def _sample_rss(server: RuntimeServer, stop: asyncio.Event, report: OverloadReport) -> None:
    while not stop.is_set():
        report.rss_peak = max(report.rss_peak, server.rss_bytes())
        await asyncio.sleep(0.5)


async def run_overload(
    server: RuntimeServer,
    *,
    capacity: int,
    factor: int = 10,
    seconds: float = 10.0,
    backoff: float = 0.1,
) -> OverloadReport:
    """``factor`` × ``capacity`` clients for ``seconds``, then the leak checks."""
    clients = factor * capacity
    report = OverloadReport(clients=clients, seconds=seconds)
    report.rss_start = report.rss_peak = server.rss_bytes()
    stop = asyncio.Event()
    sampler = asyncio.create_task(_sample_rss(server, stop, report))
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(
        base_url=server.url, headers=server.headers, timeout=120, limits=limits
    ) as c:
        stop_at = time.monotonic() + seconds
        await asyncio.gather(
            *(
                _client(c, server.model, i, stop_at=stop_at, backoff=backoff, report=report)
                for i in range(clients)
            )
        )
    stop.set()
    await sampler
    idle = server.wait_idle()
    report.rss_end = server.rss_bytes()
    report.leaked_blocks = idle.leaked_blocks
    report.running_after = idle.running
    report.waiting_after = idle.waiting
    return report
