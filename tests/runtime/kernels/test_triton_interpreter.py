"""Run the Triton kernel tests (``triton/``) in a child pytest under ``TRITON_INTERPRET=1``.

See ``triton/conftest.py`` for why they cannot share this process. The child's summary is
echoed, and any failure fails this test with the child's full output.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

FOLDER = Path(__file__).parent / "triton"
ROOT = Path(__file__).resolve().parents[3]


def test_triton_kernels_under_the_interpreter() -> None:
    pytest.importorskip("triton")
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    child = subprocess.run(
        [sys.executable, "-m", "pytest", str(FOLDER), "-q", "-p", "no:cacheprovider"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    print(child.stdout.strip().splitlines()[-1] if child.stdout.strip() else "(no output)")
    assert child.returncode == 0, child.stdout + child.stderr
    assert " passed" in child.stdout and "no tests ran" not in child.stdout
