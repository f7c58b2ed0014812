"""Shared helpers of the Triton kernels: interpreter detection and the dot operand dtype.

Triton's CPU interpreter (``TRITON_INTERPRET=1``) evaluates ``tl.dot`` with numpy, which
has no bfloat16: bf16 operands come out as garbage there. The kernels therefore take the
operand dtype of their dots as a ``constexpr``: the activations' dtype on a GPU, fp32
under the interpreter. Weights are cast to it after they are unpacked, so integer and
FP8 weights enter the dot exactly in either case.
"""

from __future__ import annotations

import os

import torch
import triton.language as tl

_TL_DTYPES = {torch.bfloat16: tl.bfloat16, torch.float16: tl.float16, torch.float32: tl.float32}


def interpreting() -> bool:
    """Whether Triton kernels run in the CPU interpreter in this process."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def dot_dtype(dtype: torch.dtype) -> object:
    """The ``tl`` dtype to feed ``tl.dot`` for activations of ``dtype``."""
    if interpreting():
        return tl.float32
    if dtype not in _TL_DTYPES:
        raise ValueError(f"unsupported activation dtype {dtype} for the Triton kernels")
    return _TL_DTYPES[dtype]


def next_power_of_2(n: int) -> int:
    """Smallest power of two >= ``n`` (>= 1)."""
    return 1 << max(0, (n - 1).bit_length())


def rows_block(rows: int) -> int:
    """Row tile for ``rows`` activation rows: 16 (the smallest ``tl.dot`` tile) to 64."""
    return min(64, max(16, next_power_of_2(rows)))
