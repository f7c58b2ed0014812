"""The Triton kernel tests run only in a process started with ``TRITON_INTERPRET=1``.

``triton.jit`` chooses between the compiler and the CPU interpreter when a function is
*defined*, and that includes Triton's own ``tl.zeros`` & co: once anything in the session
has imported Triton without the variable (transformers does, for instance), kernels can no
longer be interpreted in that process. So a normal pytest session skips collecting this
folder, and ``tests/runtime/kernels/test_triton_interpreter.py`` runs it in a fresh
interpreter process with the variable set.
"""

from __future__ import annotations

import os

import pytest

collect_ignore_glob = [] if os.environ.get("TRITON_INTERPRET") == "1" else ["test_*.py"]

triton = pytest.importorskip("triton")
