"""Connection limits uvicorn lacks: header and body deadlines, header size, stalled readers.

uvicorn only times out *idle keep-alive* connections. A client that trickles its request
headers one byte at a time (slowloris), sends megabytes of headers (the httptools parser
keeps every header in a list), trickles a body, or opens a stream and never reads it
holds a connection, an ASGI task and, for a stream, an engine request with its KV blocks
for ever. ``guarded_protocol(limits)`` wraps uvicorn's HTTP protocol class (httptools when
installed, else h11: what ``http="auto"`` picks) so that, per connection:

    bytes arrive ──► [waiting for headers] ──headers complete──► [reading body] ──► app
                      │ > header_timeout s: 408, close         │ > body_timeout s: 408, close
                      │ > max_header_bytes: 431, close
    app writes  ──► transport buffer over its high-water mark (client not reading)
                      │ still paused after send_timeout s: abort the connection

Aborting a stalled connection makes uvicorn report ``http.disconnect``; the streaming
response stops and the engine aborts the request, freeing its blocks. Each cut is counted
in ``dsr:connections_cut_total{reason}`` when a counter is given. Other clients are not
slowed: every timer is an event-loop callback, nothing blocks.

Used by ``server.cli`` (``uvicorn.Config(http=guarded_protocol(...))``); tested by
``tests/runtime/server/test_slow_clients.py``.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter

from .config import ServerConfig

log = logging.getLogger("deepseek_runtime.server.limits")

CutCounter = Callable[[str], None]
LINGER_SECONDS = 0.5
"""How long a connection stays open after an early answer while its body still arrives."""


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """Per-connection limits; every duration in seconds."""

    header_timeout: float = 10.0
    """From the first byte of a request to the end of its headers (slowloris)."""
    body_timeout: float = 60.0
    """From the end of the headers to the end of the body (a trickled upload)."""
    send_timeout: float = 30.0
    """How long a response may wait for a client that does not read (stalled stream)."""
    max_header_bytes: int = 64 * 1024
    """Request line plus headers; beyond it: 431 and close."""

    def __post_init__(self) -> None:
        for name in ("header_timeout", "body_timeout", "send_timeout"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0")
        if self.max_header_bytes < 1024:
            raise ValueError("max_header_bytes must be >= 1024")


def connection_limits(config: ServerConfig) -> ConnectionLimits:
    """The limits ``serve`` was given (``--header-timeout`` and friends)."""
    return ConnectionLimits(
        header_timeout=config.header_timeout,
        body_timeout=config.body_timeout,
        send_timeout=config.send_timeout,
        max_header_bytes=config.max_header_bytes,
    )


def cut_counter(registry: CollectorRegistry) -> CutCounter:
    """``dsr:connections_cut_total{reason}`` in ``registry``, as a callback for the protocol."""
    counter = Counter(
        "dsr:connections_cut",
        "Connections cut by a limit (header/body/send timeout, header size).",
        ["reason"],
        registry=registry,
    )
    return lambda reason: counter.labels(reason).inc()


def _base_protocol() -> type[asyncio.Protocol]:
    if importlib.util.find_spec("httptools") is not None:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol  # noqa: PLC0415

        return HttpToolsProtocol
    from uvicorn.protocols.http.h11_impl import H11Protocol  # noqa: PLC0415

    return H11Protocol


def _reply_and_close(transport: asyncio.Transport, status: int, reason: str) -> None:
    body = reason.encode()
    transport.write(
        b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\n"
        b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (status, body, len(body), body)
    )
    transport.close()


def guarded_protocol(
    limits: ConnectionLimits, on_cut: CutCounter | None = None
) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol class with ``limits`` enforced on every connection."""
    base: Any = _base_protocol()

    class GuardedProtocol(base):  # type: ignore[misc]
        # uvicorn's protocols are untyped towards us; the attributes used here
        # (transport, cycle, loop) exist on both the h11 and the httptools classes.
        _limits = limits

        def connection_made(self, transport: asyncio.Transport) -> None:
            super().connection_made(transport)
            self._seen_cycle: Any = None
            self._header_bytes = 0
            self._header_timer: asyncio.TimerHandle | None = None
            self._body_timer: asyncio.TimerHandle | None = None
            self._send_timer: asyncio.TimerHandle | None = None
            self._lingering = False
            # a connection that never sends a byte is a slowloris too
            self._header_timer = self.loop.call_later(
                self._limits.header_timeout, self._cut, 408, "header_timeout"
            )

        def _awaiting_headers(self) -> bool:
            cycle = self.cycle
            # the next request starts once the last one was answered and its body read
            return cycle is None or (
                cycle is self._seen_cycle and cycle.response_complete and not cycle.more_body
            )

        def data_received(self, data: bytes) -> None:
            cycle = self.cycle
            if cycle is not None and cycle.response_complete and cycle.more_body:
                # answered (e.g. 413) while the body still streams in: read no more of
                # it, close shortly (a short linger so the client sees the answer first)
                if not self._lingering:
                    self._lingering = True
                    self._cancel(self._body_timer)
                    self._body_timer = self.loop.call_later(LINGER_SECONDS, self.transport.close)
                return
            waiting = self._awaiting_headers()
            if waiting and self._header_timer is None:
                self._header_bytes = 0
                self._header_timer = self.loop.call_later(
                    self._limits.header_timeout, self._cut, 408, "header_timeout"
                )
            super().data_received(data)
            if self.transport.is_closing():
                self._cancel_timers()
                return
            cycle = self.cycle
            if cycle is not None and cycle is not self._seen_cycle:
                # a new request's headers are complete
                self._seen_cycle = cycle
                self._cancel(self._header_timer)
                self._header_timer = None
                if cycle.more_body and self._body_timer is None:
                    self._body_timer = self.loop.call_later(
                        self._limits.body_timeout, self._cut, 408, "body_timeout"
                    )
            elif waiting:
                self._header_bytes += len(data)
                if self._header_bytes > self._limits.max_header_bytes:
                    self._cut(431, "header_too_large")
                    return
            if cycle is not None and not cycle.more_body and self._body_timer is not None:
                self._cancel(self._body_timer)
                self._body_timer = None

        def _cut(self, status: int, reason: str) -> None:
            self._cancel_timers()
            if self.transport.is_closing():
                return
            cycle = self.cycle
            log.info("connection cut", extra={"reason": reason, "client": self.client})
            if on_cut is not None:
                on_cut(reason)
            if cycle is not None and cycle.response_started:
                self.transport.abort()
                return
            if cycle is not None:
                # the app may be waiting on the body: tell it the client went away
                cycle.disconnected = True
                cycle.message_event.set()
            _reply_and_close(self.transport, status, reason.replace("_", " "))

        def pause_writing(self) -> None:
            super().pause_writing()
            if self._send_timer is None:
                self._send_timer = self.loop.call_later(self._limits.send_timeout, self._stalled)

        def resume_writing(self) -> None:
            super().resume_writing()
            self._cancel(self._send_timer)
            self._send_timer = None

        def _stalled(self) -> None:
            self._send_timer = None
            if not self.flow.write_paused:
                return
            log.info("connection cut", extra={"reason": "send_timeout", "client": self.client})
            if on_cut is not None:
                on_cut("send_timeout")
            self._cancel_timers()
            self.transport.abort()  # drops the unsent buffer; connection_lost follows

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel_timers()
            super().connection_lost(exc)

        @staticmethod
        def _cancel(timer: asyncio.TimerHandle | None) -> None:
            if timer is not None:
                timer.cancel()

        def _cancel_timers(self) -> None:
            for name in ("_header_timer", "_body_timer", "_send_timer"):
                self._cancel(getattr(self, name, None))
                setattr(self, name, None)

    GuardedProtocol.__name__ = f"Guarded{base.__name__}"
    return GuardedProtocol
