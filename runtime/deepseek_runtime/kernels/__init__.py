"""Compute kernels behind a stable seam: torch reference implementations that run on CPU.

The model layers in :mod:`deepseek_runtime.model` call only these functions, so faster
CUDA/Triton versions can be swapped in later without touching the layers. Nothing in this
package imports CUDA-only code at import time.
"""
