"""Triton weight-only GEMMs (int8, int4, FP8 blocks) under the interpreter vs torch."""

from __future__ import annotations

import pytest
import torch

from deepseek_runtime.kernels.fp8 import Fp8Weight, quantize_fp8_blocks
from deepseek_runtime.kernels.quant.int4 import quantize_int4
from deepseek_runtime.kernels.quant.int8 import quantize_int8
from deepseek_runtime.kernels.triton.gemm import (
    choose_split_k,
    dense_gemm,
    fp8_block_gemm,
    k_block,
    w4a16_gemm,
    w8a16_gemm,
)

pytestmark = pytest.mark.unit


def _inputs(m: int, n: int, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(m * 1000 + n + k)
    return torch.randn(m, k, generator=gen), torch.randn(n, k, generator=gen) * 0.05


def _close(got: torch.Tensor, want: torch.Tensor) -> None:
    assert got.shape == want.shape
    torch.testing.assert_close(got.float(), want.float(), rtol=1e-4, atol=1e-4)


# batch 1 (GEMV), a ragged batch and one past a row tile; N and K not multiples of tiles
@pytest.mark.parametrize(("m", "n", "k"), [(1, 96, 128), (5, 80, 192), (33, 64, 128)])
def test_w8a16_matches_dequantized_reference(m: int, n: int, k: int) -> None:
    x, w = _inputs(m, n, k)
    q = quantize_int8(w, torch.float32)
    _close(w8a16_gemm(x, q.qweight, q.scales), x @ q.dequantize().T)


# K split across programs (GEMV on a GPU); 3 splits of 320 columns leave a short last one
@pytest.mark.parametrize("split", [2, 3])
def test_split_k_sums_the_partial_products(split: int) -> None:
    x, w = _inputs(2, 64, 320)
    q8 = quantize_int8(w, torch.float32)
    _close(w8a16_gemm(x, q8.qweight, q8.scales, split_k=split), x @ q8.dequantize().T)
    q4 = quantize_int4(w, 64, torch.float32, layout="nibble")
    _close(w4a16_gemm(x, q4.packed, q4.scales, 64, split_k=split), x @ q4.dequantize().T)
    got = w8a16_gemm(x.bfloat16(), q8.qweight, q8.scales.bfloat16(), split_k=split)
    assert got.dtype == torch.bfloat16


def test_choose_split_k() -> None:
    assert choose_split_k(programs=64, k_tiles=64, multiprocessors=132) == 5  # GEMV 4096
    assert choose_split_k(programs=64, k_tiles=8, multiprocessors=132) == 2  # >= 4 tiles each
    assert choose_split_k(programs=400, k_tiles=64, multiprocessors=132) == 1  # full grid
    assert choose_split_k(programs=4, k_tiles=64, multiprocessors=0) == 1  # not a GPU


@pytest.mark.parametrize(("m", "n", "k", "group"), [(1, 64, 128, 32), (7, 72, 256, 128)])
def test_w4a16_matches_dequantized_reference(m: int, n: int, k: int, group: int) -> None:
    x, w = _inputs(m, n, k)
    q = quantize_int4(w, group, torch.float32, layout="nibble")
    _close(w4a16_gemm(x, q.packed, q.scales, group), x @ q.dequantize().T)


@pytest.mark.parametrize(("m", "n", "k"), [(1, 128, 256), (9, 200, 136)])
def test_fp8_block_gemm_matches_dequantized_reference(m: int, n: int, k: int) -> None:
    x, w = _inputs(m, n, k)
    data, scale_inv = quantize_fp8_blocks(w)
    ref = Fp8Weight(data, scale_inv, (128, 128), torch.float32).dequantize()
    _close(fp8_block_gemm(x, data, scale_inv), x @ ref.T)


def test_dense_gemm_and_output_dtype() -> None:
    x, w = _inputs(3, 64, 64)
    _close(dense_gemm(x, w), x @ w.T)
    assert dense_gemm(x.half(), w.half()).dtype == torch.float16


def test_k_step_stays_inside_a_group() -> None:
    assert k_block(2, 32) == 32 and k_block(2, 128) == 64 and k_block(1, 1) == 64
    with pytest.raises(ValueError, match="power of two"):
        k_block(2, 48)
