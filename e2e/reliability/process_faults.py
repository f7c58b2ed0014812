"""Process-fault suites: SIGTERM under load (nothing admitted is lost) and a killed worker.

Both keep ``clients`` closed-loop clients busy (streamed and whole completions, half
each), then hurt the server:

- ``run_sigterm_under_load``: SIGTERM to ``serve``. Every request sent before the signal
  must complete; later ones get 503 + Retry-After (or find the port closed once the
  server is gone). The server must exit 0.
- ``run_worker_death``: SIGKILL to one worker rank of a multi-process group
  (``--tensor-parallel-size 2``). The group must exit non-zero within seconds, and no
  request may hang; each in-flight request should end with an error answer (a 5xx/503
  body or an error event in the stream) rather than a connection reset.

Each request ends in one outcome (see ``Outcome``); the reports count them.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

from .server import RuntimeServer

COMPLETED = "completed"
ERROR_ANSWER = "error_answer"  # a non-200 answer with a JSON error body
ERROR_IN_ANSWER = "error_in_answer"  # a 200 stream that says it failed (error event/finish)
# a 200 whole (non-streamed) answer that says it failed: the server could still have sent
# an error status, and should have (the suites allow it nowhere)
ERROR_IN_WHOLE_ANSWER = "error_in_whole_answer"
TRUNCATED = "truncated"  # a 200 answer cut short without saying why
RESET_BEFORE_ANSWER = "reset_before_answer"
CONNECT_REFUSED = "connect_refused"
HANG = "hang"


@dataclass(frozen=True, slots=True)
class Outcome:
    kind: str
    sent: float  # monotonic
    ended: float
    status: int | None = None
    retry_after: bool = False


@dataclass
class LoadRecorder:
    """Closed-loop clients; every request's :class:`Outcome`."""

    server: RuntimeServer
    clients: int
    max_tokens: int = 32
    request_timeout: float = 60.0
    outcomes: list[Outcome] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def _request(self, c: httpx.AsyncClient, index: int, n: int) -> Outcome:
        stream = (index + n) % 2 == 0
        body = {
            "model": self.server.model,
            "prompt": f"fault {index} {n}",
            "max_tokens": self.max_tokens,
            "ignore_eos": True,
            "stream": stream,
        }
        sent = time.monotonic()
        status: int | None = None
        try:
            async with asyncio.timeout(self.request_timeout):
                async with c.stream("POST", "/v1/completions", json=body) as r:
                    status = r.status_code
                    raw = b"".join([chunk async for chunk in r.aiter_bytes()])
                    retry = "retry-after" in r.headers
            kind = _judge(status, raw, stream)
            return Outcome(kind, sent, time.monotonic(), status, retry)
        except TimeoutError:
            return Outcome(HANG, sent, time.monotonic(), status)
        except httpx.ConnectError:
            return Outcome(CONNECT_REFUSED, sent, time.monotonic())
        except httpx.HTTPError:
            kind = RESET_BEFORE_ANSWER if status is None else TRUNCATED
            return Outcome(kind, sent, time.monotonic(), status)

    async def _loop(self, index: int) -> None:
        limits = httpx.Limits(max_connections=1)
        async with httpx.AsyncClient(
            base_url=self.server.url, headers=self.server.headers, timeout=None, limits=limits
        ) as c:
            n = 0
            while not self._stop.is_set():
                n += 1
                outcome = await self._request(c, index, n)
                self.outcomes.append(outcome)
                if outcome.kind == CONNECT_REFUSED:
                    return  # the server is gone
                if outcome.kind != COMPLETED:
                    await asyncio.sleep(0.05)

    async def run_until(self, stop: asyncio.Event) -> None:
        tasks = [asyncio.create_task(self._loop(i)) for i in range(self.clients)]
        await stop.wait()
        self._stop.set()
        await asyncio.gather(*tasks)


def _judge(status: int, raw: bytes, stream: bool) -> str:
    if status != 200:
        try:
            ok = "error" in json.loads(raw)
        except ValueError:
            ok = False
        return ERROR_ANSWER if ok else TRUNCATED
    if not stream:
        text = raw.decode(errors="replace")
        if _reports_error(text):
            return ERROR_IN_WHOLE_ANSWER
        try:
            doc = json.loads(text)
        except ValueError:
            return TRUNCATED
        return COMPLETED if isinstance(doc, dict) and doc.get("choices") else TRUNCATED
    events = [
        line[6:] for line in raw.decode(errors="replace").splitlines() if line[:6] == "data: "
    ]
    if any(_reports_error(e) for e in events):
        return ERROR_IN_ANSWER
    return COMPLETED if events and events[-1] == "[DONE]" else TRUNCATED


def _reports_error(event: str) -> bool:
    """An SSE event that is an error object, or a chunk with ``finish_reason: error``."""
    try:
        doc = json.loads(event)
    except ValueError:
        return False
    if not isinstance(doc, dict):
        return False
    if "error" in doc:
        return True
    return any(
        isinstance(c, dict) and c.get("finish_reason") == "error" for c in doc.get("choices") or []
    )


def _counts(outcomes: list[Outcome]) -> dict[str, int]:
    return dict(Counter(o.kind for o in outcomes))


@dataclass
class SigtermReport:
    clients: int
    sent_before_signal: int = 0
    completed_before_signal: int = 0
    lost: int = 0
    after_signal: dict[str, int] = field(default_factory=dict)
    refusals_without_retry_after: int = 0
    drain_seconds: float = 0.0
    exit_code: int | None = None
    outcomes: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "clients": self.clients,
            "sent_before_signal": self.sent_before_signal,
            "completed_before_signal": self.completed_before_signal,
            "lost": self.lost,
            "after_signal": self.after_signal,
            "refusals_without_retry_after": self.refusals_without_retry_after,
            "drain_seconds": round(self.drain_seconds, 3),
            "exit_code": self.exit_code,
        }


async def run_sigterm_under_load(
    server: RuntimeServer, *, clients: int = 8, warm_seconds: float = 3.0, max_tokens: int = 32
) -> SigtermReport:
    """Load, SIGTERM, wait for the exit; a request sent before the signal that does not
    complete is lost."""
    recorder = LoadRecorder(server, clients, max_tokens=max_tokens)
    stop = asyncio.Event()
    load = asyncio.create_task(recorder.run_until(stop))
    await asyncio.sleep(warm_seconds)
    signalled = time.monotonic()
    server.terminate()
    proc = server.proc
    if proc is None:
        raise RuntimeError("server not started")
    while proc.poll() is None:
        await asyncio.sleep(0.05)
    exited = time.monotonic()
    stop.set()
    await load
    report = SigtermReport(clients=clients, exit_code=proc.returncode)
    report.drain_seconds = exited - signalled
    before = [o for o in recorder.outcomes if o.sent < signalled]
    after = [o for o in recorder.outcomes if o.sent >= signalled]
    report.sent_before_signal = len(before)
    report.completed_before_signal = sum(o.kind == COMPLETED for o in before)
    report.lost = report.sent_before_signal - report.completed_before_signal
    report.after_signal = _counts(after)
    report.refusals_without_retry_after = sum(
        o.kind == ERROR_ANSWER and o.status == 503 and not o.retry_after for o in after
    )
    report.outcomes = _counts(recorder.outcomes)
    return report


@dataclass
class WorkerDeathReport:
    clients: int
    worker_pids: list[int] = field(default_factory=list)
    exit_code: int | None = None
    exit_seconds: float | None = None
    in_flight_at_kill: dict[str, int] = field(default_factory=dict)
    after_kill: dict[str, int] = field(default_factory=dict)
    hung: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "clients": self.clients,
            "exit_code": self.exit_code,
            "exit_seconds": None if self.exit_seconds is None else round(self.exit_seconds, 3),
            "in_flight_at_kill": self.in_flight_at_kill,
            "sent_after_kill": self.after_kill,
            "hung": self.hung,
        }


async def run_worker_death(
    server: RuntimeServer,
    *,
    clients: int = 6,
    warm_seconds: float = 3.0,
    exit_timeout: float = 30.0,
    max_tokens: int = 200,
) -> WorkerDeathReport:
    """Load, SIGKILL the first worker rank, wait for the group to exit."""
    recorder = LoadRecorder(server, clients, max_tokens=max_tokens, request_timeout=exit_timeout)
    stop = asyncio.Event()
    load = asyncio.create_task(recorder.run_until(stop))
    await asyncio.sleep(warm_seconds)
    report = WorkerDeathReport(clients=clients, worker_pids=server.workers())
    if not report.worker_pids:
        stop.set()
        await load
        raise AssertionError("the server has no worker process to kill")
    killed = time.monotonic()
    os.kill(report.worker_pids[0], signal.SIGKILL)
    proc = server.proc
    if proc is None:
        raise RuntimeError("server not started")
    deadline = killed + exit_timeout
    while proc.poll() is None and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    if proc.poll() is not None:
        report.exit_code = proc.returncode
        report.exit_seconds = time.monotonic() - killed
    stop.set()
    await load
    in_flight = [o for o in recorder.outcomes if o.sent < killed <= o.ended]
    report.in_flight_at_kill = _counts(in_flight)
    report.after_kill = _counts([o for o in recorder.outcomes if o.sent >= killed])
    report.hung = sum(o.kind == HANG for o in recorder.outcomes)
    return report
