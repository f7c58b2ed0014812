"""compressed-tensors checkpoints made by the library decode to its own decompression, exactly.

Each test quantizes a small module tree with the ``compressed-tensors`` package (scales
from its own ``calculate_qparams``), compresses it with ``ModelCompressor`` into the
on-disk form (safetensors + ``config.json``), decodes that with our decoder, and compares
against the library decompressing the same compressed model: ``torch.equal``, not close.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file

from deepseek_runtime.checkpoint.compressed_tensors import (
    decode_checkpoint,
    parse_quantization_config,
    unpack_int32,
)
from deepseek_runtime.kernels.fp8 import Fp8Weight
from deepseek_runtime.kernels.quant.int4 import Int4Weight
from deepseek_runtime.kernels.quant.int8 import Int8Weight

ct = pytest.importorskip("compressed_tensors")
from compressed_tensors.compressors import ModelCompressor  # noqa: E402
from compressed_tensors.compressors.pack_quantized import pack_to_int32  # noqa: E402
from compressed_tensors.quantization import (  # noqa: E402
    QuantizationArgs,
    QuantizationConfig,
    QuantizationScheme,
    apply_quantization_config,
)
from compressed_tensors.quantization.utils import calculate_qparams  # noqa: E402

pytestmark = pytest.mark.unit

LAYERS = {"q_proj": (128, 256), "o_proj": (256, 128), "down_proj": (256, 384)}


def _model(dtype: torch.dtype) -> torch.nn.Module:
    torch.manual_seed(0)
    attn = torch.nn.ModuleDict(
        {name: torch.nn.Linear(i, o, bias=False) for name, (o, i) in LAYERS.items()}
    )
    model = torch.nn.ModuleDict(
        {"layers": torch.nn.ModuleList([torch.nn.ModuleDict({"mix": attn})])}
    )
    model["lm_head"] = torch.nn.Linear(128, 64, bias=False)
    return model.to(dtype)


def _observe(linear: torch.nn.Linear, args: QuantizationArgs) -> None:
    """Min/max scales for the weight, computed by the library, written into its params."""
    w = linear.weight.data.float()
    rows, cols = w.shape
    if args.strategy == "group":
        view = w.reshape(rows, cols // args.group_size, args.group_size)
        lo, hi = view.amin(-1), view.amax(-1)
    elif args.strategy == "block":
        bo, bi = args.block_structure
        view = w.reshape(rows // bo, bo, cols // bi, bi)
        lo, hi = view.amin((1, 3)), view.amax((1, 3))
    elif args.strategy == "channel":
        lo, hi = w.amin(1, keepdim=True), w.amax(1, keepdim=True)
    else:
        lo, hi = w.amin().reshape(1), w.amax().reshape(1)
    scale, zero = calculate_qparams(lo, hi, args)
    linear.weight_scale.data.copy_(scale.reshape(linear.weight_scale.shape))
    if hasattr(linear, "weight_zero_point"):
        linear.weight_zero_point.data.copy_(zero.reshape(linear.weight_zero_point.shape))


def _checkpoint(
    tmp_path: Path, args: dict[str, Any], fmt: str, dtype: torch.dtype = torch.bfloat16
) -> tuple[dict[str, torch.Tensor], dict[str, Any], torch.nn.Module]:
    """Write a compressed checkpoint; return its tensors, config.json and the library's
    own decompression of the same compressed model."""
    model = _model(dtype)
    weights = QuantizationArgs(**args)
    config = QuantizationConfig(
        config_groups={"group_0": QuantizationScheme(targets=["Linear"], weights=weights)},
        format=fmt,
        ignore=["lm_head"],
    )
    apply_quantization_config(model, config)
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and name != "lm_head":
            _observe(module, module.quantization_scheme.weights)
    compressor = ModelCompressor(quantization_config=config, force_compression_format=fmt)
    compressor.compress_model(model)
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()}, tmp_path / "w.safetensors"
    )
    compressor.update_config(str(tmp_path))
    tensors = load_file(tmp_path / "w.safetensors")
    cfg = json.loads((tmp_path / "config.json").read_text())
    compressor.decompress_model(model)
    return tensors, cfg, model


def _decoded(tensors: dict[str, torch.Tensor], cfg: dict[str, Any]) -> dict[str, Any]:
    parsed = parse_quantization_config(cfg)
    assert parsed is not None
    return decode_checkpoint(tensors, parsed)


def _assert_exact(decoded: dict[str, Any], reference: torch.nn.Module, kind: type) -> None:
    assert sorted(decoded) == [f"layers.0.mix.{n}" for n in sorted(LAYERS)]
    for prefix, weight in decoded.items():
        want = reference.get_submodule(prefix).weight.data
        assert isinstance(weight, kind), prefix
        got = weight.dequantize() if not isinstance(weight, torch.Tensor) else weight
        assert got.dtype == want.dtype and got.shape == want.shape
        assert torch.equal(got, want), prefix


@pytest.mark.parametrize("group", [32, 128])
def test_pack_quantized_int4_groups(tmp_path: Path, group: int) -> None:
    args = {"num_bits": 4, "type": "int", "symmetric": True, "strategy": "group",
            "group_size": group}  # fmt: skip
    tensors, cfg, ref = _checkpoint(tmp_path, args, "pack-quantized")
    decoded = _decoded(tensors, cfg)
    _assert_exact(decoded, ref, Int4Weight)
    x = torch.randn(3, 256).bfloat16()
    q_proj = decoded["layers.0.mix.q_proj"]
    want = x.float() @ ref.get_submodule("layers.0.mix.q_proj").weight.float().T
    assert float((q_proj.apply(x).float() - want).norm() / want.norm()) < 1e-2


def test_pack_quantized_int4_channel(tmp_path: Path) -> None:
    args = {"num_bits": 4, "type": "int", "symmetric": True, "strategy": "channel"}
    tensors, cfg, ref = _checkpoint(tmp_path, args, "pack-quantized")
    _assert_exact(_decoded(tensors, cfg), ref, Int4Weight)


def test_pack_quantized_int8_channel(tmp_path: Path) -> None:
    args = {"num_bits": 8, "type": "int", "symmetric": True, "strategy": "channel"}
    tensors, cfg, ref = _checkpoint(tmp_path, args, "pack-quantized")
    _assert_exact(_decoded(tensors, cfg), ref, Int8Weight)


def test_pack_quantized_int4_asymmetric_decodes_dense(tmp_path: Path) -> None:
    args = {"num_bits": 4, "type": "int", "symmetric": False, "strategy": "group",
            "group_size": 64}  # fmt: skip
    tensors, cfg, ref = _checkpoint(tmp_path, args, "pack-quantized")
    assert any(k.endswith("weight_zero_point") for k in tensors)
    _assert_exact(_decoded(tensors, cfg), ref, torch.Tensor)


@pytest.mark.parametrize(("strategy", "kind"), [("channel", Int8Weight), ("group", torch.Tensor)])
def test_naive_quantized_int8(tmp_path: Path, strategy: str, kind: type) -> None:
    args: dict[str, Any] = {"num_bits": 8, "type": "int", "symmetric": True, "strategy": strategy}
    if strategy == "group":
        args["group_size"] = 64
    tensors, cfg, ref = _checkpoint(tmp_path, args, "naive-quantized")
    assert tensors["layers.0.mix.q_proj.weight"].dtype == torch.int8
    _assert_exact(_decoded(tensors, cfg), ref, kind)


@pytest.mark.parametrize(
    "extra",
    [{"strategy": "block", "block_structure": [128, 128]}, {"strategy": "channel"},
     {"strategy": "tensor"}],
)  # fmt: skip
def test_float_quantized_fp8(tmp_path: Path, extra: dict[str, Any]) -> None:
    args = {"num_bits": 8, "type": "float", "symmetric": True, **extra}
    tensors, cfg, ref = _checkpoint(tmp_path, args, "float-quantized")
    assert tensors["layers.0.mix.q_proj.weight"].dtype == torch.float8_e4m3fn
    _assert_exact(_decoded(tensors, cfg), ref, Fp8Weight)


def test_fp32_scales_decode_exactly(tmp_path: Path) -> None:
    args = {"num_bits": 4, "type": "int", "symmetric": True, "strategy": "group",
            "group_size": 64}  # fmt: skip
    tensors, cfg, ref = _checkpoint(tmp_path, args, "pack-quantized", dtype=torch.float32)
    _assert_exact(_decoded(tensors, cfg), ref, Int4Weight)


@pytest.mark.parametrize("bits", [2, 3, 4, 5, 8])
def test_unpack_inverts_the_library_packing(bits: int) -> None:
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1))
    values = torch.randint(lo, hi, (6, 70), dtype=torch.int8)
    assert torch.equal(unpack_int32(pack_to_int32(values, bits), bits, 70), values)


def test_config_parsing() -> None:
    assert parse_quantization_config({"quantization_config": {"quant_method": "fp8"}}) is None
    assert parse_quantization_config({}) is None
    parsed = parse_quantization_config(
        {"quantization_config": {"quant_method": "compressed-tensors", "format": "pack-quantized",
         "ignore": ["lm_head", "re:.*gate$"],
         "config_groups": {"g": {"targets": ["re:.*experts.*"], "weights": {"num_bits": 4}}}}}
    )  # fmt: skip
    assert parsed is not None
    assert parsed.scheme_for("model.layers.3.mlp.experts.7.up_proj") is not None
    assert parsed.scheme_for("model.layers.3.mlp.gate") is None
    assert parsed.scheme_for("lm_head") is None
    assert parsed.scheme_for("model.layers.0.self_attn.q_proj") is None
