"""The liveness link between the nodes of a multi-node group, and a worker node's health.

Called by :mod:`~deepseek_runtime.backends.tp_group`. torch.distributed notices a dead
peer only inside a collective, and an idle group sits in none: the leader would learn
that a worker node died only when the next request arrives. So every worker node keeps
one TCP connection open to the leader at ``master_port + 1``; either side reads it, and
end-of-file (the peer exited, however it died: the kernel closes its sockets) fails the
group at once::

    leader (node 0)  ◀──── "node 1\\n" then silence ────  worker node 1
       EOF: a worker node is gone -> exit 1               EOF: the leader is gone -> exit 1

Worker nodes serve no API: :class:`HealthServer` answers ``/health`` and ``/ready`` (200
while the node's ranks run and the link is up, else 503) so their pods' probes work.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

log = logging.getLogger("deepseek_runtime.backends.node_link")

CONNECT_RETRY_S = 0.5


def link_port(master_port: int) -> int:
    """The liveness link's port: the one after torch.distributed's."""
    return master_port + 1


def _watch(conn: socket.socket, on_lost: Callable[[], None]) -> None:
    """Block on ``conn`` until the peer goes away, then call ``on_lost``."""
    try:
        while conn.recv(64):
            pass
    except OSError:
        pass
    finally:
        conn.close()
    on_lost()


class LeaderLink:
    """The leader's end: accepts one connection per worker node and watches each."""

    def __init__(self, port: int, on_lost: Callable[[int], None]) -> None:
        self._server = socket.create_server(("", port), reuse_port=False)
        self._on_lost = on_lost
        self._closing = threading.Event()
        threading.Thread(target=self._accept, name="node-link", daemon=True).start()

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            hello = conn.recv(64).decode(errors="replace").split()
            node = int(hello[1]) if len(hello) == 2 and hello[1].isdigit() else -1
            log.info("worker node linked", extra={"node_rank": node})
            threading.Thread(
                target=_watch, args=(conn, lambda n=node: self._lost(n)), daemon=True
            ).start()

    def _lost(self, node: int) -> None:
        if not self._closing.is_set():
            self._on_lost(node)

    def close(self) -> None:
        self._closing.set()
        self._server.close()


def connect_to_leader(
    addr: str, port: int, node_rank: int, timeout_s: float, on_lost: Callable[[], None]
) -> socket.socket:
    """Connect to the leader's link (retrying while it starts) and watch it.

    Raises:
        TimeoutError: the leader did not answer within ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            conn = socket.create_connection((addr, port), timeout=5)
            break
        except OSError as exc:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"leader {addr}:{port} did not answer in {timeout_s:.0f} s"
                ) from exc
            time.sleep(CONNECT_RETRY_S)
    conn.settimeout(None)
    conn.sendall(f"node {node_rank}\n".encode())
    threading.Thread(target=_watch, args=(conn, on_lost), name="node-link", daemon=True).start()
    return conn


class HealthServer:
    """``/health`` (alive) and ``/ready`` (``ready()``) on a worker node; nothing else."""

    def __init__(self, host: str, port: int, ready: Callable[[], bool]) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/health":
                    code = 200
                elif self.path == "/ready":
                    code = 200 if ready() else 503
                else:
                    code = 404
                body = b'{"role": "worker"}' if code == 200 else b"{}"
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.port = int(self.httpd.server_address[1])
        threading.Thread(target=self.httpd.serve_forever, name="health", daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
