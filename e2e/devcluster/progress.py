"""Progress lines for long devcluster steps (stdout, seconds since the process started)."""

from __future__ import annotations

import time

_T0 = time.monotonic()


def progress(message: str) -> None:
    """Print one ``[devcluster  12.3s] message`` line and flush it."""
    print(f"[devcluster {time.monotonic() - _T0:6.1f}s] {message}", flush=True)
