"""Slow-client suite: slowloris, huge headers, oversized and trickled bodies, unread streams.

Each attacker is a raw loopback socket doing one bad thing:

- ``slowloris``: a request line, then one header line every ``drip`` seconds, never done;
- ``idle``: connects and sends nothing;
- ``huge_headers``: one megabyte of header lines;
- ``big_body``: ``Content-Length`` over the server's limit, body streamed;
- ``chunked_body``: a chunked body that never ends, past the limit;
- ``trickled_body``: a small body sent one byte every ``drip`` seconds;
- ``unread_stream``: a streamed completion (big choices) whose answer is never read, on a
  socket with a tiny receive buffer.

While they run, :class:`~e2e.reliability.probe.Victims` measure small completions. An
attacker counts as *cut* when the server answers an error status or closes the
connection (EOF/reset) within ``deadline`` seconds; an unread stream counts as cut when
the server aborts it (``dsr:connections_cut_total{reason="send_timeout"}``) and no
request is left running. After the attack the KV cache must be whole again.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from .probe import Victims, VictimStats, measure_quiet
from .server import RuntimeServer, metric

KINDS = (
    "slowloris",
    "idle",
    "huge_headers",
    "big_body",
    "chunked_body",
    "trickled_body",
    "unread_stream",
)


@dataclass
class AttackOutcome:
    kind: str
    cut: bool
    seconds: float
    status: int | None = None


@dataclass
class SlowClientReport:
    attackers: int
    cut: Counter[str] = field(default_factory=Counter)
    not_cut: Counter[str] = field(default_factory=Counter)
    statuses: Counter[str] = field(default_factory=Counter)
    max_cut_seconds: dict[str, float] = field(default_factory=dict)
    quiet: VictimStats = field(default_factory=VictimStats)
    attack: VictimStats = field(default_factory=VictimStats)
    server_cuts: dict[str, float] = field(default_factory=dict)
    leaked_blocks: int = 0
    running_after: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "attackers": self.attackers,
            "cut": dict(self.cut),
            "not_cut": dict(self.not_cut),
            "attacker_statuses": dict(self.statuses),
            "max_cut_seconds": self.max_cut_seconds,
            "server_cuts": self.server_cuts,
            "victims_quiet": self.quiet.summary(),
            "victims_under_attack": self.attack.summary(),
            "leaked_kv_blocks": self.leaked_blocks,
            "running_after": self.running_after,
        }


async def _connect(host: str, port: int, rcvbuf: int | None = None) -> tuple[Any, Any]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (host, port))
    return await asyncio.open_connection(sock=sock, limit=1024)


def _status(head: bytes) -> int | None:
    parts = head.split(b" ", 2)
    if len(parts) >= 2 and parts[0].startswith(b"HTTP/") and parts[1].isdigit():
        return int(parts[1])
    return None


async def _until_closed(reader: asyncio.StreamReader, deadline: float) -> tuple[bool, int | None]:
    """Read until EOF/reset or ``deadline`` (monotonic); (closed, status of any answer)."""
    status: int | None = None
    buf = b""
    while time.monotonic() < deadline:
        try:
            chunk = await asyncio.wait_for(reader.read(65536), deadline - time.monotonic())
        except TimeoutError:
            return False, status
        except (ConnectionError, OSError):
            return True, status
        if not chunk:
            return True, status
        if status is None:
            buf += chunk
            status = _status(buf)
    return False, status


async def _send_slowly(
    writer: asyncio.StreamWriter,
    reader: asyncio.StreamReader,
    parts: list[bytes],
    drip: float,
    deadline: float,
) -> tuple[bool, int | None]:
    """Send ``parts`` one per ``drip`` seconds while watching for the server to hang up."""
    watch = asyncio.create_task(_until_closed(reader, deadline))
    try:
        for part in parts:
            if watch.done():
                break
            writer.write(part)
            try:
                await writer.drain()
            except (ConnectionError, OSError):
                break
            await asyncio.wait([watch], timeout=drip)
        return await watch
    finally:
        watch.cancel()
        writer.close()


def _request_head(method: str, path: str, extra: list[str]) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *extra]
    return ("\r\n".join(lines) + "\r\n").encode()


async def _attack(
    kind: str, host: str, port: int, model: str, *, body_limit: int, deadline_s: float, drip: float
) -> AttackOutcome:
    started = time.monotonic()
    deadline = started + deadline_s
    rcvbuf = 2048 if kind == "unread_stream" else None
    reader, writer = await _connect(host, port, rcvbuf)
    endless = [b"X-Drip-%d: a\r\n" % i for i in range(100_000)]
    if kind == "slowloris":
        parts = [_request_head("GET", "/v1/models", []), *endless]
        closed, status = await _send_slowly(writer, reader, parts, drip, deadline)
    elif kind == "idle":
        closed, status = await _send_slowly(writer, reader, [], drip, deadline)
    elif kind == "huge_headers":
        header = b"X-Big: " + b"a" * 8000 + b"\r\n"
        parts = [_request_head("GET", "/v1/models", []), *([header] * 128), b"\r\n"]
        closed, status = await _send_slowly(writer, reader, parts, 0.001, deadline)
    elif kind == "big_body":
        head = _request_head(
            "POST",
            "/v1/completions",
            ["Content-Type: application/json", f"Content-Length: {body_limit * 4}", ""],
        )
        parts = [head, *([b" " * 65536] * (body_limit * 4 // 65536))]
        closed, status = await _send_slowly(writer, reader, parts, 0.001, deadline)
    elif kind == "chunked_body":
        head = _request_head(
            "POST",
            "/v1/completions",
            ["Content-Type: application/json", "Transfer-Encoding: chunked", ""],
        )
        chunk = b"10000\r\n" + b" " * 65536 + b"\r\n"
        parts = [head, *([chunk] * (body_limit * 4 // 65536))]
        closed, status = await _send_slowly(writer, reader, parts, 0.001, deadline)
    elif kind == "trickled_body":
        body = json.dumps({"model": model, "prompt": "x" * 200, "max_tokens": 1}).encode()
        head = _request_head(
            "POST",
            "/v1/completions",
            ["Content-Type: application/json", f"Content-Length: {len(body)}", ""],
        )
        parts = [head, *(body[i : i + 1] for i in range(len(body)))]
        closed, status = await _send_slowly(writer, reader, parts, drip, deadline)
    elif kind == "unread_stream":
        body = json.dumps(
            {
                "model": model,
                # the echoed prompt's logprobs make megabytes at once: the buffers fill
                "prompt": [2 + (i * 7) % 500 for i in range(1000)],
                "echo": True,
                "max_tokens": 300,
                "n": 8,
                "logprobs": 20,
                "stream": True,
                "ignore_eos": True,
            }
        ).encode()
        head = _request_head(
            "POST",
            "/v1/completions",
            ["Content-Type: application/json", f"Content-Length: {len(body)}", ""],
        )
        writer.write(head + body)
        await writer.drain()
        # never read: the connection is judged from the server's side (see run_slow_clients)
        await asyncio.sleep(max(0.0, deadline - time.monotonic()))
        writer.transport.abort()
        return AttackOutcome(kind, cut=False, seconds=deadline_s)
    else:
        raise ValueError(f"unknown attack {kind!r}")
    return AttackOutcome(kind, cut=closed, seconds=time.monotonic() - started, status=status)


async def run_slow_clients(
    server: RuntimeServer,
    *,
    per_kind: int = 2,
    kinds: tuple[str, ...] = KINDS,
    quiet_seconds: float = 3.0,
    deadline_s: float = 20.0,
    drip: float = 0.5,
    body_limit: int = 4 << 20,
) -> SlowClientReport:
    """Baseline victim latency, then every attacker at once with the victims running."""
    split = urlsplit(server.url)
    host, port = split.hostname or "127.0.0.1", int(split.port or 80)
    report = SlowClientReport(attackers=per_kind * len(kinds))
    report.quiet = await measure_quiet(server.url, server.model, quiet_seconds, server.headers)
    before = metric(server.metrics(), "dsr:connections_cut_total", 'reason="send_timeout"') or 0
    victims = Victims(server.url, server.model, server.headers)
    victims.start()
    outcomes = await asyncio.gather(
        *(
            _attack(
                kind,
                host,
                port,
                server.model,
                body_limit=body_limit,
                deadline_s=deadline_s,
                drip=drip,
            )
            for kind in kinds
            for _ in range(per_kind)
        )
    )
    report.attack = await victims.stop()
    text = server.metrics()
    for reason in ("header_timeout", "body_timeout", "send_timeout", "header_too_large"):
        report.server_cuts[reason] = (
            metric(text, "dsr:connections_cut_total", f'reason="{reason}"') or 0.0
        )
    stream_cuts = int(report.server_cuts["send_timeout"] - before)
    for o in outcomes:
        if o.kind == "unread_stream" and stream_cuts > 0:
            stream_cuts -= 1
            o.cut = True
        (report.cut if o.cut else report.not_cut)[o.kind] += 1
        report.statuses[f"{o.kind}:{o.status}"] += 1
        if o.cut:
            report.max_cut_seconds[o.kind] = round(
                max(report.max_cut_seconds.get(o.kind, 0.0), o.seconds), 3
            )
    idle = server.wait_idle()
    report.leaked_blocks = idle.leaked_blocks
    report.running_after = idle.running
    return report
