"""How linear weights are held in memory: ``--quantization auto|none|int8|int4|fp8``.

Called by :class:`~deepseek_runtime.checkpoint.weights.WeightStore` (each linear weight as
it loads) and by the model runner (resolving the request against the checkpoint):

============  =====================================  ====================================
requested     bf16 / fp32 checkpoint                 pre-quantized checkpoint
============  =====================================  ====================================
``auto``      dense                                  what it holds: compressed-tensors
                                                     int8/int4/FP8 decoded into our
                                                     kernels' weights; DeepSeek FP8
                                                     blocks kept in FP8 on CUDA,
                                                     dequantized at load on CPU
``none``      dense                                  dequantized at load
``int8``      W8A16, per output channel, at load     FP8 blocks: dequantized, then int8;
                                                     compressed-tensors: refused
``int4``      W4A16, groups of ``group_size``        as int8
``fp8``       128×128 FP8 blocks at load             FP8 blocks kept; compressed-tensors:
                                                     refused
============  =====================================  ====================================

Only linear projections are quantized (attention, MLP, shared and routed experts);
embeddings, ``lm_head``, norms, the router and MLA's ``kv_b_proj`` (split into the
absorbed ``W_uk`` / ``W_uv``) stay in the model dtype. A request the engine cannot honour
is a :class:`~deepseek_runtime.checkpoint.config.ConfigError` naming it, never a silent
fallback.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch

from deepseek_runtime.checkpoint.config import ConfigError
from deepseek_runtime.kernels.fp8 import Fp8Weight, quantize_fp8_blocks
from deepseek_runtime.kernels.linear import Weight
from deepseek_runtime.kernels.quant.int4 import DEFAULT_GROUP_SIZE, quantize_int4
from deepseek_runtime.kernels.quant.int8 import quantize_int8

QUANTIZATION_CHOICES = ("auto", "none", "int8", "int4", "fp8")
CPU_INT4_GROUP_SIZES = (32, 64, 128, 256)  # what torch's packed CPU int4 matmul takes
CPU_INT4_ROW_MULTIPLE = 16  # its tile layout packs output rows in groups of 16
Method = Literal["none", "int8", "int4", "fp8"]
CheckpointFormat = Literal["dense", "fp8-blocks", "compressed-tensors"]


@dataclass(frozen=True, slots=True)
class LoadQuantization:
    """What :meth:`WeightStore.get_linear` turns each linear weight into.

    Attributes:
        method: ``none`` (model dtype), ``int8``, ``int4`` or ``fp8`` (128×128 blocks).
        group_size: input columns per int4 scale.
        decode_stored: decode a compressed-tensors checkpoint's own format (``auto``).
        keep_stored_fp8: keep weights stored as DeepSeek FP8 blocks in FP8 (the other
            linears of such a checkpoint are held as ``method`` says).
    """

    method: Method = "none"
    group_size: int = DEFAULT_GROUP_SIZE
    decode_stored: bool = False
    keep_stored_fp8: bool = False


def checkpoint_format(quantization_config: dict[str, Any] | None) -> CheckpointFormat:
    """The format ``config.json``'s ``quantization_config`` says the weights are in."""
    method = (quantization_config or {}).get("quant_method")
    if method is None:
        return "dense"
    if method == "fp8":
        return "fp8-blocks"
    if method == "compressed-tensors":
        return "compressed-tensors"
    raise ConfigError(f"quantization_config.quant_method: unsupported {method!r}")


def resolve_quantization(
    requested: str,
    stored: CheckpointFormat,
    device: torch.device,
    group_size: int = DEFAULT_GROUP_SIZE,
) -> LoadQuantization:
    """Turn ``--quantization`` into what the loader does for this checkpoint (see table)."""
    if requested not in QUANTIZATION_CHOICES:
        raise ConfigError(
            f"--quantization {requested!r}: expected one of {', '.join(QUANTIZATION_CHOICES)}"
        )
    if requested == "int4" and device.type == "cpu" and group_size not in CPU_INT4_GROUP_SIZES:
        raise ConfigError(
            f"--quantization-group-size {group_size}: the CPU int4 kernel takes "
            f"{', '.join(map(str, CPU_INT4_GROUP_SIZES))}"
        )
    if stored == "compressed-tensors":
        if requested in ("int8", "int4", "fp8"):
            raise ConfigError(
                f"--quantization {requested}: the checkpoint is already quantized "
                "(compressed-tensors); use --quantization auto (its own format) or none"
            )
        return LoadQuantization("none", group_size, decode_stored=True)
    if stored == "fp8-blocks" and requested in ("auto", "fp8"):
        keep = requested == "fp8" or device.type == "cuda"
        return LoadQuantization("none", group_size, keep_stored_fp8=keep)
    if requested == "auto":
        return LoadQuantization("none", group_size)
    return LoadQuantization(requested, group_size)  # type: ignore[arg-type]


def quantize_linear(
    name: str, dense: torch.Tensor, spec: LoadQuantization, dtype: torch.dtype
) -> Weight:
    """``dense`` ``[out, in]`` held as ``spec.method`` (the tensor itself for ``none``)."""
    if spec.method == "none":
        return dense
    if spec.method == "int8":
        return quantize_int8(dense, dtype)
    if spec.method == "int4":
        if dense.shape[1] % spec.group_size:
            raise ConfigError(
                f"--quantization int4: tensor {name!r} has {dense.shape[1]} input columns, "
                f"not a multiple of the group size {spec.group_size} "
                "(set --quantization-group-size to a divisor)"
            )
        if dense.device.type == "cpu" and dense.shape[0] % CPU_INT4_ROW_MULTIPLE:
            raise ConfigError(
                f"--quantization int4: tensor {name!r} has {dense.shape[0]} output rows; the "
                f"CPU int4 kernel packs rows in tiles of {CPU_INT4_ROW_MULTIPLE}"
            )
        return quantize_int4(dense, spec.group_size, dtype)
    block = (128, 128)
    q, scale = quantize_fp8_blocks(dense.float(), block)
    return Fp8Weight(q, scale, block, dtype)


def resident_bytes(weight: Weight) -> int:
    """Bytes a weight holds in memory (packed values and scales for quantized ones)."""
    if isinstance(weight, torch.Tensor):
        return weight.numel() * weight.element_size()
    return int(weight.nbytes)
