"""Whether a model loads its linear weights for the native CPU kernels: ``--cpu-kernels``.

============  ==============================================================
``auto``      packed when the model runs fp32 on CPU in one process with
              dense weights and the kernels build here; else torch's GEMMs,
              with the reason logged at load
``packed``    packed, or a ``ConfigError`` saying why it cannot be
``torch``     torch's GEMMs (MKL / oneDNN), whatever the model
============  ==============================================================

The kernels cover fp32 only (bf16 / fp16 activations, int8 / int4 / FP8 weights and CUDA
have their own kernels), and the tensor- / pipeline-parallel loaders shard weights on
their own path, which keeps torch's GEMMs. A pure decision over what the loader knows,
plus the build outcome, so it is table-tested without a compiler.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from deepseek_runtime.checkpoint.config import ConfigError

CpuKernels = Literal["auto", "packed", "torch"]
CPU_KERNEL_CHOICES: tuple[CpuKernels, ...] = ("auto", "packed", "torch")
DEFAULT_CPU_KERNELS: CpuKernels = "auto"


@dataclass(frozen=True, slots=True)
class CpuKernelDecision:
    """What the loader does, and why (logged at load)."""

    packed: bool
    reason: str


def ineligible_reason(
    device: torch.device, dtype: torch.dtype, *, dense_weights: bool, parallel: bool
) -> str | None:
    """Why this model cannot use the packed kernels (None when it can)."""
    if device.type != "cpu":
        return f"the packed kernels run on CPU; the model is on {device.type}"
    if dtype != torch.float32:
        return f"the packed kernels are fp32; the model runs {str(dtype).removeprefix('torch.')}"
    if not dense_weights:
        return "the weights are quantized (int8 / int4 / FP8 have their own kernels)"
    if parallel:
        return "tensor / pipeline parallel ranks load sharded weights with torch's GEMMs"
    return None


def decide(requested: str, ineligible: str | None, build_failure: str | None) -> CpuKernelDecision:
    """``--cpu-kernels`` against the model (``ineligible``) and the build outcome.

    ``build_failure`` is only consulted when the model is eligible (the caller builds the
    library only then).

    Raises:
        ConfigError: for an unknown value, or ``packed`` that cannot be honoured.
    """
    if requested not in CPU_KERNEL_CHOICES:
        raise ConfigError(
            f"--cpu-kernels {requested!r}: expected one of {', '.join(CPU_KERNEL_CHOICES)}"
        )
    if requested == "torch":
        return CpuKernelDecision(False, "--cpu-kernels torch")
    reason = ineligible or build_failure
    if reason is None:
        return CpuKernelDecision(True, "fp32 on CPU: weights packed for the native kernels")
    if requested == "packed":
        raise ConfigError(f"--cpu-kernels packed: {reason}")
    return CpuKernelDecision(False, reason)
