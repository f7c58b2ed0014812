"""The quantized-weight protocol: what every weight format offers to the linear seam.

A checkpoint format (our own load-time int8/int4, compressed-tensors, DeepSeek-V3's FP8
blocks) decodes each linear's tensors into one object that satisfies
:class:`QuantizedWeight`. :func:`deepseek_runtime.kernels.linear.linear` then calls
``weight.apply(x)`` without knowing the format, so the model can keep a plain mapping
``{layer prefix: weight}`` and swap formats without touching its layers.

``apply`` is the hot path and must never rebuild the dense weight; ``dequantize`` exists
for tests and reference comparisons only.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class QuantizedWeight(Protocol):
    """A ``[out_features, in_features]`` linear weight held in a compact format."""

    @property
    def out_features(self) -> int:
        """Rows of the logical weight (the size of ``apply``'s last output dim)."""
        ...

    @property
    def in_features(self) -> int:
        """Columns of the logical weight (the size of ``apply``'s last input dim)."""
        ...

    @property
    def nbytes(self) -> int:
        """Bytes resident in memory: packed weight plus scales (and zero points)."""
        ...

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """``x @ W.T`` for ``x`` of shape ``[..., in_features]``; same dtype as ``x``."""
        ...

    def dequantize(self) -> torch.Tensor:
        """The dense ``[out, in]`` weight the kernel computes with (tests only)."""
        ...


def flatten_tokens(x: torch.Tensor, in_features: int) -> tuple[torch.Tensor, tuple[int, ...]]:
    """``x`` as ``[T, in]`` and the leading shape to restore on the output.

    Raises:
        ValueError: when the last dimension of ``x`` is not ``in_features``.
    """
    if x.shape[-1] != in_features:
        raise ValueError(f"input has {x.shape[-1]} features, the weight expects {in_features}")
    lead = tuple(x.shape[:-1])
    return x.reshape(-1, in_features), lead


def tensor_bytes(*tensors: torch.Tensor | None) -> int:
    """Storage bytes of the given tensors (``None`` counts zero)."""
    return sum(t.numel() * t.element_size() for t in tensors if t is not None)
