"""Runs the pinned kubectl against a kubeconfig and decodes its output.

A thin subprocess wrapper shared by ``e2e.devcluster.cluster`` and the e2e fixtures.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any


class KubectlError(RuntimeError):
    """kubectl exited non-zero; ``stderr`` holds its message."""

    def __init__(self, args: list[str], returncode: int, stderr: str) -> None:
        super().__init__(f"kubectl {' '.join(args)} failed ({returncode}): {stderr.strip()}")
        self.args_list = args
        self.returncode = returncode
        self.stderr = stderr


def kubectl(
    binary: Path,
    kubeconfig: Path,
    *args: str,
    stdin: str | None = None,
    check: bool = True,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Run ``kubectl --kubeconfig KUBECONFIG ARGS``; raise :class:`KubectlError` if it fails."""
    cmd = [str(binary), "--kubeconfig", str(kubeconfig), *args]
    proc = subprocess.run(
        cmd, input=stdin, capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and proc.returncode != 0:
        raise KubectlError(list(args), proc.returncode, proc.stderr)
    return proc


def kubectl_json(binary: Path, kubeconfig: Path, *args: str) -> Any:
    """Run a kubectl read command with ``-o json`` and return the decoded document."""
    return json.loads(kubectl(binary, kubeconfig, *args, "-o", "json").stdout)
