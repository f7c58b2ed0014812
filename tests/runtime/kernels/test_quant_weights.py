"""CPU int8 / int4 weights: numerics against dequantize-then-matmul, resident bytes, error."""

from __future__ import annotations

import pytest
import torch

from deepseek_runtime.kernels.fp8 import Fp8Weight, quantize_fp8_blocks
from deepseek_runtime.kernels.linear import concat_rows, linear
from deepseek_runtime.kernels.moe import fused_moe
from deepseek_runtime.kernels.quant.base import QuantizedWeight
from deepseek_runtime.kernels.quant.experts import (
    quantize_int4_experts,
    quantize_int8_experts,
)
from deepseek_runtime.kernels.quant.int4 import Int4Weight, int4_from_values, quantize_int4
from deepseek_runtime.kernels.quant.int4_layout import pack_nibbles, unpack_cpu, unpack_nibbles
from deepseek_runtime.kernels.quant.int8 import Int8Weight, quantize_int8

pytestmark = pytest.mark.unit


def _weight(out: int, inp: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(out, inp, generator=torch.Generator().manual_seed(seed)) * 0.05


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm())


@pytest.mark.parametrize("tokens", [1, 7, 32])
def test_int8_apply_matches_dequantized_reference(tokens: int) -> None:
    w = quantize_int8(_weight(96, 256))
    x = torch.randn(tokens, 256).to(torch.bfloat16)
    ref = x.float() @ w.dequantize().float().T
    got = linear(x, w)
    assert got.dtype == torch.bfloat16 and got.shape == (tokens, 96)
    assert _rel_err(got, ref) < 1e-2


@pytest.mark.parametrize(("tokens", "group"), [(1, 128), (5, 64), (32, 32)])
def test_int4_apply_matches_dequantized_reference(tokens: int, group: int) -> None:
    w = quantize_int4(_weight(128, 256), group_size=group)
    assert w.layout == "cpu"
    x = torch.randn(tokens, 256).to(torch.bfloat16)
    ref = x.float() @ w.dequantize().float().T
    assert _rel_err(linear(x, w), ref) < 1e-2


def test_apply_keeps_leading_dims_and_input_dtype() -> None:
    w = quantize_int4(_weight(64, 128), group_size=64)
    x = torch.randn(2, 3, 128)
    y = w.apply(x)
    assert y.shape == (2, 3, 64) and y.dtype == torch.float32
    with pytest.raises(ValueError, match="expects 128"):
        w.apply(torch.randn(3, 64))


def test_linear_adds_bias_for_quantized_weights() -> None:
    w = quantize_int8(_weight(32, 64))
    x, bias = torch.randn(4, 64).bfloat16(), torch.randn(32).bfloat16()
    assert torch.equal(linear(x, w, bias), w.apply(x) + bias)


def test_all_formats_satisfy_the_protocol() -> None:
    dense = _weight(128, 128)
    fp8 = Fp8Weight(*quantize_fp8_blocks(dense), (128, 128), torch.float32)
    for w in (quantize_int8(dense), quantize_int4(dense), fp8):
        assert isinstance(w, QuantizedWeight)
        assert (w.out_features, w.in_features) == (128, 128)
        assert w.dequantize().shape == (128, 128)
    assert not isinstance(dense, QuantizedWeight)


def test_int4_cpu_layout_reads_back_the_values_it_packed() -> None:
    q = torch.randint(-8, 8, (192, 256), dtype=torch.int8)
    w = int4_from_values(q, torch.ones(192, 2, dtype=torch.bfloat16), 128, "cpu")
    assert torch.equal(unpack_cpu(w.packed, 192, 256), q)
    assert torch.equal(unpack_nibbles(pack_nibbles(q)), q)


def test_int4_layouts_agree() -> None:
    dense = _weight(64, 256)
    cpu = quantize_int4(dense, 64, layout="cpu")
    nib = quantize_int4(dense, 64, layout="nibble")
    assert torch.equal(cpu.dequantize(), nib.dequantize())
    x = torch.randn(3, 256).bfloat16()
    assert _rel_err(cpu.apply(x), nib.apply(x)) < 1e-2


def test_resident_bytes_are_half_and_quarter_of_bf16_plus_scales() -> None:
    out, inp, group = 512, 1024, 128
    dense = _weight(out, inp)
    bf16 = out * inp * 2
    int8 = quantize_int8(dense)
    int4 = quantize_int4(dense, group)
    assert int8.nbytes == out * inp + out * 2
    # the CPU int4 kernel keeps a (scale, zero) bf16 pair per group
    assert int4.nbytes == out * inp // 2 + out * (inp // group) * 2 * 2
    assert 0.5 <= int8.nbytes / bf16 <= 0.51
    assert 0.25 <= int4.nbytes / bf16 <= 0.27


def test_error_falls_as_bits_rise() -> None:
    dense = _weight(256, 512, seed=3)
    x = torch.randn(16, 512)
    ref = x @ dense.T
    err4 = _rel_err(quantize_int4(dense, 128, torch.float32).apply(x), ref)
    err8 = _rel_err(quantize_int8(dense, torch.float32).apply(x), ref)
    fp8 = Fp8Weight(*quantize_fp8_blocks(dense), (128, 128), torch.float32)
    err_fp8 = _rel_err(linear(x, fp8), ref)
    assert err8 < err_fp8 < err4 < 0.2
    assert err8 < err4 / 8


def test_bad_shapes_are_rejected() -> None:
    with pytest.raises(ValueError, match="divide"):
        quantize_int4(_weight(8, 100), group_size=64)
    with pytest.raises(ValueError, match="2-D"):
        quantize_int8(torch.zeros(2, 3, 4))
    with pytest.raises(ValueError, match="scales"):
        Int8Weight(torch.zeros(4, 4, dtype=torch.int8), torch.ones(3))
    with pytest.raises(ValueError, match="needs scales"):
        Int4Weight(torch.zeros(4, 8, dtype=torch.uint8), torch.ones(4, 3), 8, 16, "nibble")


def test_concat_rows_stays_quantized() -> None:
    a8, b8 = quantize_int8(_weight(32, 128)), quantize_int8(_weight(16, 128, seed=1))
    fused8 = concat_rows(a8, b8)
    assert isinstance(fused8, Int8Weight)
    assert torch.equal(fused8.dequantize(), torch.cat((a8.dequantize(), b8.dequantize())))
    a4, b4 = quantize_int4(_weight(64, 128), 64), quantize_int4(_weight(32, 128, seed=1), 64)
    fused4 = concat_rows(a4, b4)
    assert isinstance(fused4, Int4Weight)
    assert torch.equal(fused4.dequantize(), torch.cat((a4.dequantize(), b4.dequantize())))


@pytest.mark.parametrize("bits", [8, 4])
def test_stacked_experts_run_through_fused_moe(bits: int) -> None:
    experts, hidden, inter = 4, 128, 64
    gen = torch.Generator().manual_seed(5)
    gate_up = torch.randn(experts, 2 * inter, hidden, generator=gen) * 0.05
    down = torch.randn(experts, hidden, inter, generator=gen) * 0.05
    if bits == 8:
        q_gate_up, q_down = quantize_int8_experts(gate_up), quantize_int8_experts(down)
    else:
        q_gate_up = quantize_int4_experts(gate_up, group_size=64)
        q_down = quantize_int4_experts(down, group_size=64)
    assert len(q_gate_up) == experts
    x = torch.randn(10, hidden).bfloat16()
    ids = torch.randint(0, experts, (10, 2), generator=gen)
    weights = torch.rand(10, 2, generator=gen)
    got = fused_moe(x, ids, weights, q_gate_up, q_down)
    ref_gu = torch.stack([w.dequantize() for w in q_gate_up]).float()
    ref_down = torch.stack([w.dequantize() for w in q_down]).float()
    ref = fused_moe(x.float(), ids, weights, ref_gu, ref_down)
    assert _rel_err(got, ref) < 2e-2
    assert q_gate_up.nbytes == sum(w.nbytes for w in q_gate_up)


@pytest.mark.parametrize("inp", [13, 100])
def test_int8_in_features_the_packed_kernel_does_not_take(inp: int) -> None:
    # torch._weight_int8pack_mm crashes (13) or miscomputes (100) unless in % 8 == 0
    w = quantize_int8(_weight(24, inp))
    x = torch.randn(3, inp).bfloat16()
    assert _rel_err(w.apply(x), x.float() @ w.dequantize().float().T) < 1e-2


def test_int4_shapes_outside_the_cpu_kernel_use_the_nibble_layout() -> None:
    odd_rows = quantize_int4(_weight(100, 128), group_size=64)  # rows not a multiple of 16
    small_group = quantize_int4(_weight(32, 64), group_size=16)  # group the kernel lacks
    for w in (odd_rows, small_group):
        assert w.layout == "nibble"
        x = torch.randn(2, w.in_features).bfloat16()
        assert _rel_err(w.apply(x), x.float() @ w.dequantize().float().T) < 1e-2
    with pytest.raises(ValueError, match="out_features % 16"):
        quantize_int4(_weight(100, 128), group_size=64, layout="cpu")


def test_apply_never_rebuilds_the_dense_weight(monkeypatch: pytest.MonkeyPatch) -> None:
    w8, w4 = quantize_int8(_weight(64, 128)), quantize_int4(_weight(64, 128), 64)
    x = torch.randn(4, 128).bfloat16()
    want8, want4 = w8.apply(x), w4.apply(x)

    def forbidden(self: object) -> torch.Tensor:
        raise AssertionError("dequantize() called on the hot path")

    monkeypatch.setattr(Int8Weight, "dequantize", forbidden)
    monkeypatch.setattr(Int4Weight, "dequantize", forbidden)
    monkeypatch.setattr(Int4Weight, "int_values", forbidden)
    assert torch.equal(w8.apply(x), want8) and torch.equal(w4.apply(x), want4)
