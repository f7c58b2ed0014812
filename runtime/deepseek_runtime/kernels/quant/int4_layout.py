"""Byte layouts of 4-bit weights: the portable nibble layout and torch's CPU tile layout.

Values are stored unsigned, ``u = q + 8`` for ``q`` in ``[-8, 7]``::

    nibble layout   [out, in // 2] uint8, byte j of a row = u[2j] | u[2j + 1] << 4
                    (what the Triton W4A16 kernel reads, and exactly the bytes of
                    compressed-tensors' int4 ``weight_packed`` int32 words on a
                    little-endian host)
    cpu layout      [out, in // 2] uint8 from torch._convert_weight_to_int4pack_for_cpu,
                    tiled for its AVX kernels; the tiling is torch's private choice

The CPU layout is only ever written by torch. To read it back (tests, ``dequantize``)
:func:`cpu_layout_source_index` learns the permutation by packing probe matrices whose
values spell out each element's own position, one hex digit per probe.
"""

from __future__ import annotations

from functools import lru_cache

import torch

INT4_OFFSET = 8
CPU_INNER_K_TILES = 2


def to_unsigned(q: torch.Tensor) -> torch.Tensor:
    """Signed int4 values ``[-8, 7]`` (any int dtype) as unsigned ``[0, 15]`` int32."""
    if q.numel() and (int(q.min()) < -INT4_OFFSET or int(q.max()) > INT4_OFFSET - 1):
        raise ValueError("int4 values must lie in [-8, 7]")
    return q.to(torch.int32) + INT4_OFFSET


def pack_nibbles(q: torch.Tensor) -> torch.Tensor:
    """``[out, in]`` signed int4 values -> nibble layout ``[out, in // 2]`` uint8."""
    if q.shape[-1] % 2:
        raise ValueError(f"in_features must be even for int4, got {q.shape[-1]}")
    u = to_unsigned(q)
    return (u[..., 0::2] | (u[..., 1::2] << 4)).to(torch.uint8)


def unpack_nibbles(packed: torch.Tensor) -> torch.Tensor:
    """Nibble layout ``[out, in // 2]`` uint8 -> signed ``[out, in]`` int8."""
    wide = packed.to(torch.int16)
    pairs = torch.stack((wide & 0xF, wide >> 4), dim=-1)
    return (pairs.flatten(-2) - INT4_OFFSET).to(torch.int8)


def pack_cpu(q: torch.Tensor) -> torch.Tensor:
    """``[out, in]`` signed int4 values -> torch's CPU tile layout (uint8)."""
    return torch._convert_weight_to_int4pack_for_cpu(to_unsigned(q).contiguous(), CPU_INNER_K_TILES)


def _packed_nibbles_flat(packed: torch.Tensor) -> torch.Tensor:
    wide = packed.to(torch.int64).reshape(-1)
    return torch.stack((wide & 0xF, wide >> 4), dim=-1).reshape(-1)


@lru_cache(maxsize=32)
def cpu_layout_source_index(out_features: int, in_features: int) -> torch.Tensor:
    """For each nibble of the CPU layout (flattened, low nibble first), its source index.

    The source index is ``row * in_features + col`` in the logical ``[out, in]`` matrix.
    """
    total = out_features * in_features
    positions = torch.arange(total, dtype=torch.int64)
    source = torch.zeros(total, dtype=torch.int64)
    shift = 0
    while (1 << shift) < total:
        digit = ((positions >> shift) & 0xF).to(torch.int32).view(out_features, in_features)
        packed = torch._convert_weight_to_int4pack_for_cpu(digit, CPU_INNER_K_TILES)
        source |= _packed_nibbles_flat(packed) << shift
        shift += 4
    if not torch.equal(torch.sort(source).values, positions):
        raise RuntimeError("torch's CPU int4 layout is not a permutation of the elements")
    return source


def unpack_cpu(packed: torch.Tensor, out_features: int, in_features: int) -> torch.Tensor:
    """torch's CPU tile layout -> signed ``[out, in]`` int8 values."""
    source = cpu_layout_source_index(out_features, in_features)
    values = torch.empty(out_features * in_features, dtype=torch.int8)
    values[source] = (_packed_nibbles_flat(packed.cpu()) - INT4_OFFSET).to(torch.int8)
    return values.view(out_features, in_features)
