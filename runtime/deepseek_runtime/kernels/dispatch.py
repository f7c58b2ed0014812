"""Which implementation a kernel call runs: Triton on CUDA, the torch reference elsewhere.

Called by the quantized weights' ``apply`` and by the MoE / attention entry points. The
decision is a pure function of the device and of whether Triton imports, so it is unit
tested here without a GPU; the kernels themselves are tested under Triton's interpreter.
"""

from __future__ import annotations

import importlib.util
from functools import cache
from typing import Literal

Backend = Literal["triton", "torch"]


def choose_backend(device_type: str, *, triton_available: bool) -> Backend:
    """``"triton"`` for CUDA tensors when Triton is installed, else ``"torch"``.

    CPU tensors always take the torch path (its packed int8/int4 CPU matmuls); Triton's
    interpreter is only used by the kernel tests, which call the kernels directly.
    """
    return "triton" if device_type == "cuda" and triton_available else "torch"


@cache
def triton_installed() -> bool:
    """Whether ``import triton`` would succeed (checked once, without importing it)."""
    return importlib.util.find_spec("triton") is not None


def backend_for(device_type: str) -> Backend:
    """:func:`choose_backend` for this process's installed packages."""
    return choose_backend(device_type, triton_available=triton_installed())
