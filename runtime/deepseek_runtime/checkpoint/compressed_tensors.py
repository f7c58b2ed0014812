"""Decode compressed-tensors checkpoints (``quant_method: compressed-tensors``).

Community quantizations of DeepSeek (llm-compressor's output) store each quantized
linear ``<prefix>`` as a few tensors next to each other::

    pack-quantized   <prefix>.weight_packed  int32 [out, ceil(in * bits / 32)]
                     <prefix>.weight_shape   int   [2] (the logical [out, in])
                     <prefix>.weight_scale   [out, groups] (group) or [out, 1] (channel)
                     <prefix>.weight_zero_point  (asymmetric only, packed along dim 0)
    naive-quantized  <prefix>.weight         int8  [out, in]  + weight_scale (+ zero point)
    float-quantized  <prefix>.weight         float8_e4m3fn [out, in] + weight_scale
                     ([1] tensor, [out, 1] channel or [out / bo, in / bi] block)

Values are ``(q - zero_point) * scale`` in the scale's dtype; ``pack-quantized`` packs
``q + 2**(bits-1)`` densely into little-endian int32 words, element ``i`` at bit
``i * bits``. This module turns each prefix into the runtime's own weights:

* symmetric int4 (group or channel)  -> :class:`~deepseek_runtime.kernels.quant.int4.Int4Weight`
* symmetric int8 per channel         -> :class:`~deepseek_runtime.kernels.quant.int8.Int8Weight`
* FP8 (tensor, channel or block)     -> :class:`~deepseek_runtime.kernels.fp8.Fp8Weight`
* anything else (asymmetric, int8 groups, other bit widths) -> a dense tensor

each of whose ``dequantize()`` equals the library's own decompression bit for bit (the
tests check this against the ``compressed-tensors`` package). Called by the checkpoint
loader once the lead wires ``--quantization auto``; pure tensor work, no file I/O.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from deepseek_runtime.kernels.fp8 import FP8_DTYPE, Fp8Weight
from deepseek_runtime.kernels.linear import Weight
from deepseek_runtime.kernels.quant.int4 import CPU_GROUP_SIZES, Int4Layout, int4_from_values
from deepseek_runtime.kernels.quant.int4_layout import unpack_nibbles
from deepseek_runtime.kernels.quant.int8 import Int8Weight

QUANT_METHOD = "compressed-tensors"
Format = Literal[
    "pack-quantized", "naive-quantized", "int-quantized", "float-quantized", "mixed-precision"
]
SUFFIXES = ("weight_packed", "weight_scale", "weight_zero_point", "weight_shape", "weight")
StoredFormat = Literal["pack-quantized", "naive-quantized", "float-quantized"]


class WeightArgs(BaseModel):
    """The ``weights`` entry of one config group (the parts this decoder reads)."""

    model_config = ConfigDict(extra="ignore")

    num_bits: int = 8
    type: Literal["int", "float"] = "int"
    symmetric: bool = True
    strategy: Literal["tensor", "channel", "group", "block"] | None = None
    group_size: int | None = None
    block_structure: list[int] | None = None
    actorder: str | bool | None = None


class Scheme(BaseModel):
    """One ``config_groups`` entry: which modules, and how their weights are stored."""

    model_config = ConfigDict(extra="ignore")

    targets: list[str]
    weights: WeightArgs | None = None
    format: Format | None = None


class CompressedTensorsConfig(BaseModel):
    """``config.json``'s ``quantization_config`` for ``quant_method: compressed-tensors``."""

    model_config = ConfigDict(extra="ignore")

    quant_method: Literal["compressed-tensors"]
    format: Format | None = None
    config_groups: dict[str, Scheme] = Field(default_factory=dict)
    ignore: list[str] = Field(default_factory=list)

    def scheme_for(self, prefix: str) -> Scheme | None:
        """The group whose targets match ``prefix`` (None when ignored or unmatched)."""
        if any(_matches(target, prefix) for target in self.ignore):
            return None
        for scheme in self.config_groups.values():
            if any(_matches(target, prefix) for target in scheme.targets):
                return scheme
        return None


def _matches(target: str, prefix: str) -> bool:
    # "Linear" names a module class: every quantized tensor group here is a linear
    if target.startswith("re:"):
        return re.match(target[3:], prefix) is not None
    return target in {"Linear", prefix}


def parse_quantization_config(config: Mapping[str, Any]) -> CompressedTensorsConfig | None:
    """The compressed-tensors config in ``config.json``'s data, or None if it has none.

    Raises:
        pydantic.ValidationError: when the section is malformed or names a format this
            decoder does not read (e.g. ``nvfp4-pack-quantized``).
    """
    section = config.get("quantization_config")
    if not isinstance(section, Mapping) or section.get("quant_method") != QUANT_METHOD:
        return None
    return CompressedTensorsConfig.model_validate(dict(section))


def quantized_prefixes(names: list[str] | Mapping[str, Any]) -> list[str]:
    """Prefixes of the modules that carry a ``weight_scale`` (sorted)."""
    return sorted({n.removesuffix(".weight_scale") for n in names if n.endswith(".weight_scale")})


def decode_checkpoint(
    tensors: Mapping[str, torch.Tensor],
    config: CompressedTensorsConfig,
    *,
    int4_layout: Int4Layout | None = None,
) -> dict[str, Weight]:
    """Decode every quantized module of a (local) state dict: ``{prefix: weight}``.

    Tensors of modules that are not quantized are not returned; the caller reads them
    as usual.
    """
    decoded: dict[str, Weight] = {}
    for prefix in quantized_prefixes(tensors):
        scheme = config.scheme_for(prefix)
        if scheme is None or scheme.weights is None:
            raise ValueError(f"{prefix}: has weight_scale but no config group targets it")
        local = {s: tensors[f"{prefix}.{s}"] for s in SUFFIXES if f"{prefix}.{s}" in tensors}
        decoded[prefix] = decode_module(local, scheme.weights, int4_layout=int4_layout)
    return decoded


def stored_format(local: Mapping[str, torch.Tensor]) -> StoredFormat:
    """The format the tensors are really in (the library may pick another per module than
    the config's top-level ``format`` says, so the tensors decide)."""
    if "weight_packed" in local:
        return "pack-quantized"
    if local["weight"].dtype == FP8_DTYPE:
        return "float-quantized"
    return "naive-quantized"


def decode_module(
    local: Mapping[str, torch.Tensor],
    args: WeightArgs,
    *,
    int4_layout: Int4Layout | None = None,
) -> Weight:
    """Decode one module's tensors (local names, e.g. ``weight_packed``) into a weight."""
    if args.actorder not in (None, False):
        raise ValueError("activation-ordered (GPTQ actorder) weights are not supported")
    scale = local["weight_scale"]
    fmt = stored_format(local)
    if fmt == "float-quantized":
        return _decode_fp8(local["weight"], scale, args)
    if args.type != "int":
        raise ValueError(f"format {fmt} stores int weights, the config says {args.type}")
    if fmt == "pack-quantized":
        shape = tuple(int(v) for v in local["weight_shape"].tolist())
        q = unpack_int32(local["weight_packed"], args.num_bits, shape[1])
        zero = local.get("weight_zero_point")
        if zero is not None:
            zero = unpack_int32(zero.t().contiguous(), args.num_bits, shape[0]).t()
    else:
        q, zero = local["weight"], local.get("weight_zero_point")
    if zero is None and args.symmetric:
        weight = _decode_symmetric_int(q, scale, args, int4_layout)
        if weight is not None:
            return weight
    return dequantize_int(q, scale, zero, _group_size(args, q.shape[1]))


def unpack_int32(packed: torch.Tensor, num_bits: int, columns: int) -> torch.Tensor:
    """compressed-tensors' dense int32 packing -> signed int8 values ``[rows, columns]``."""
    if packed.dtype != torch.int32:
        raise ValueError(f"packed weights must be int32, got {packed.dtype}")
    if sys.byteorder != "little":
        raise ValueError("compressed-tensors weights are decoded on little-endian hosts only")
    rows = packed.shape[0]
    raw = packed.contiguous().view(torch.uint8)  # byte b of word w: bits 8b..8b+7
    if num_bits == 8:
        return (raw[:, :columns].to(torch.int16) - 128).to(torch.int8)
    if num_bits == 4:
        return unpack_nibbles(raw)[:, :columns]
    bits = ((raw.to(torch.int16).unsqueeze(-1) >> torch.arange(8)) & 1).reshape(rows, -1)
    usable = (bits.shape[1] // num_bits) * num_bits
    per_value = bits[:, :usable].reshape(rows, -1, num_bits)
    values = (per_value * (1 << torch.arange(num_bits))).sum(dim=-1)[:, :columns]
    return (values - (1 << (num_bits - 1))).to(torch.int8)


def _group_size(args: WeightArgs, columns: int) -> int:
    if args.strategy == "group":
        if not args.group_size:
            raise ValueError("group strategy without group_size")
        return args.group_size
    return columns  # channel / tensor: one scale spans the row


def dequantize_int(
    q: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor | None, group_size: int
) -> torch.Tensor:
    """``(q - zero) * scale`` per group in the scale's dtype (the library's arithmetic)."""
    rows, columns = q.shape
    dtype = scale.dtype
    scale2 = scale.reshape(rows, -1) if scale.numel() > 1 else scale.reshape(1, 1)
    grouped = q.to(dtype).reshape(rows, columns // group_size, group_size)
    if zero is not None:
        zero2 = zero.reshape(scale2.shape).to(dtype)
        grouped = grouped - zero2.unsqueeze(-1)
    return (grouped * scale2.unsqueeze(-1)).reshape(rows, columns)


def _decode_symmetric_int(
    q: torch.Tensor, scale: torch.Tensor, args: WeightArgs, layout: Int4Layout | None
) -> Weight | None:
    rows, columns = q.shape
    if args.num_bits == 8 and args.strategy == "channel":
        return Int8Weight(q.to(torch.int8).contiguous(), scale.reshape(rows).contiguous())
    if args.num_bits != 4 or args.strategy not in ("group", "channel"):
        return None
    group = _group_size(args, columns)
    scales = scale.reshape(rows, columns // group)
    kernel_group = group
    if (layout or "cpu") == "cpu" and group not in CPU_GROUP_SIZES:
        # a row's one scale repeated per 32..256 columns: same values, kernel-sized groups
        kernel_group = next((g for g in sorted(CPU_GROUP_SIZES, reverse=True) if group % g == 0), 0)
        if not kernel_group:
            return None
        scales = scales.repeat_interleave(group // kernel_group, dim=1)
    return int4_from_values(q, scales.contiguous(), kernel_group, layout)


def _decode_fp8(weight: torch.Tensor, scale: torch.Tensor, args: WeightArgs) -> Fp8Weight:
    if weight.dtype != FP8_DTYPE:
        raise ValueError(f"float-quantized weight must be float8_e4m3fn, got {weight.dtype}")
    rows, columns = weight.shape
    if args.strategy == "block":
        bo, bi = args.block_structure or (128, 128)
        block = (int(bo), int(bi))
        scale_inv = scale.reshape(-(-rows // bo), -(-columns // bi))
    elif args.strategy == "channel":
        block, scale_inv = (1, columns), scale.reshape(rows, 1)
    elif args.strategy == "tensor":
        block, scale_inv = (rows, columns), scale.reshape(1, 1)
    else:
        raise ValueError(f"FP8 weights with strategy {args.strategy!r} are not supported")
    # fp8 (3 mantissa bits) times the scale is exact in fp32, so the one rounding to the
    # scale's dtype matches the library's multiply in that dtype
    return Fp8Weight(weight, scale_inv.float().contiguous(), block, scale.dtype)
