"""A file loaded once and reloaded when it changes, keeping the last good version.

Kubernetes updates a mounted Secret or ConfigMap by swapping a symlink, so the file's
(mtime, size, inode) signature, read with ``stat`` through the link, changes; polling it at
most once per ``interval`` seconds on the request path costs one ``stat`` a second and
needs no inotify. A file that fails to load (it is being written, or is invalid) keeps the
previous value and logs an error; a later change is tried again. A bad file at start-up is
fatal (ValueError), since there is no previous value to keep.

Used by ``server.roles`` (the roles file) and ``server.jwt_auth`` (a JWKS file).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

T = TypeVar("T")

log = logging.getLogger("deepseek_runtime.server")


def _signature(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


class WatchedFile(Generic[T]):
    """``current()`` is the last good ``load(path)``; it re-loads when the file changed."""

    def __init__(
        self,
        path: Path,
        load: Callable[[Path], T],
        *,
        what: str,
        interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self.what = what
        self._load = load
        self._interval = interval
        self._clock = clock
        self._signature = _signature(path)
        self.value: T = load(path)
        self._checked = clock()
        self.reloads = 0
        self.failures = 0

    def current(self) -> T:
        """The value, re-checking the file when ``interval`` has passed since the last look."""
        now = self._clock()
        if now - self._checked >= self._interval:
            self.check(now)
        return self.value

    def check(self, now: float | None = None) -> bool:
        """Look at the file now; True when a changed file was loaded."""
        self._checked = self._clock() if now is None else now
        signature = _signature(self.path)
        if signature == self._signature:
            return False
        self._signature = signature
        try:
            self.value = self._load(self.path)
        except ValueError as exc:
            self.failures += 1
            log.error("%s reload failed, keeping the previous version: %s", self.what, exc)
            return False
        self.reloads += 1
        log.info("%s reloaded", self.what, extra={"path": str(self.path)})
        return True
