"""Rotary embedding application (reference on CPU).

Called by :class:`deepseek_runtime.model.rope.RotaryEmbedding`, which owns the frequency
tables (plain, YaRN, llama3). Interleaved rotation pairs ``(x0, x1), (x2, x3), ...``
(DeepSeek checkpoints); non-interleaved pairs ``(x_i, x_{i+d/2})`` (rotate-half: Qwen2,
Llama, DeepSeek with ``rope_interleave: false``). Both return the rotated pairs as
``[first elements | second elements]``: q and k share the layout, so their dot products
are unchanged by that ordering.
"""

from __future__ import annotations

import torch


def apply_rotary(
    x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, *, interleaved: bool
) -> torch.Tensor:
    """Rotate ``x`` ``[T, ..., dim]`` with per-token ``cos``/``sin`` ``[T, dim/2]``."""
    half = x.shape[-1] // 2
    if interleaved:
        x1, x2 = x[..., 0::2], x[..., 1::2]
    else:
        x1, x2 = x[..., :half], x[..., half:]
    shape = (cos.shape[0],) + (1,) * (x.dim() - 2) + (half,)
    c = cos.view(shape).to(x.dtype)
    s = sin.view(shape).to(x.dtype)
    return torch.cat((x1 * c - x2 * s, x2 * c + x1 * s), dim=-1)
