"""Run this folder's Triton kernels in Triton's CPU interpreter.

``triton.jit`` picks the interpreter when a kernel is *defined*, so the variable must be
set before the kernel modules are imported: conftest.py is imported before the test
modules beside it are collected. Only this folder imports those modules on CPU.
"""

from __future__ import annotations

import os

import pytest

os.environ["TRITON_INTERPRET"] = "1"

triton = pytest.importorskip("triton")
