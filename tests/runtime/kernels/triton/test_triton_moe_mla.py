"""Triton grouped MoE GEMM and paged MLA decode under the interpreter vs the torch reference."""

from __future__ import annotations

import pytest
import torch

from deepseek_runtime.kernels.mla_decode import paged_mla_decode
from deepseek_runtime.kernels.moe import fused_moe, moe_forward
from deepseek_runtime.kernels.quant.experts import quantize_int4_experts, quantize_int8_experts
from deepseek_runtime.kernels.triton.mla_decode import choose_splits, mla_decode_latent
from deepseek_runtime.kernels.triton.moe import align_by_expert, triton_fused_moe

pytestmark = pytest.mark.unit

EXPERTS, HIDDEN, INTER = 4, 64, 32


def _moe_case(tokens: int) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(tokens)
    gate_up = torch.randn(EXPERTS, 2 * INTER, HIDDEN, generator=gen) * 0.1
    down = torch.randn(EXPERTS, HIDDEN, INTER, generator=gen) * 0.1
    x = torch.randn(tokens, HIDDEN, generator=gen)
    ids = torch.stack([torch.randperm(EXPERTS, generator=gen)[:2] for _ in range(tokens)])
    weights = torch.rand(tokens, 2, generator=gen)
    return x, ids, weights, gate_up, down


def test_align_by_expert_pads_each_run_to_whole_tiles() -> None:
    ids = torch.tensor([[2, 0], [2, 3], [0, 2]])
    rows, tiles = align_by_expert(ids, num_experts=4, block_m=2)
    # pairs (flattened ids 2 0 2 3 0 2) by expert: e0 -> 1, 4; e2 -> 0, 2, 5 (+pad);
    # e3 -> 3 (+pad); e1 has none
    assert rows.tolist() == [1, 4, 0, 2, 5, -1, 3, -1]
    assert tiles.tolist() == [0, 2, 2, 3]  # one expert per tile of 2 rows


@pytest.mark.parametrize("tokens", [1, 6])
def test_grouped_moe_dense_matches_reference(tokens: int) -> None:
    x, ids, weights, gate_up, down = _moe_case(tokens)
    want = fused_moe(x, ids, weights, gate_up, down)
    got = triton_fused_moe(x, ids, weights, gate_up, down)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("bits", [8, 4])
def test_grouped_moe_quantized_matches_reference(bits: int) -> None:
    x, ids, weights, gate_up, down = _moe_case(5)
    if bits == 8:
        q_gu = quantize_int8_experts(gate_up, torch.float32)
        q_down = quantize_int8_experts(down, torch.float32)
    else:
        q_gu = quantize_int4_experts(gate_up, 32, torch.float32, layout="nibble")
        q_down = quantize_int4_experts(down, 32, torch.float32, layout="nibble")
    ref_gu = torch.stack([w.dequantize() for w in q_gu])
    ref_down = torch.stack([w.dequantize() for w in q_down])
    want = fused_moe(x, ids, weights, ref_gu, ref_down)
    got = triton_fused_moe(x, ids, weights, q_gu, q_down)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_moe_forward_on_cpu_is_the_reference_loop() -> None:
    x, ids, weights, gate_up, down = _moe_case(3)
    q_gu, q_down = quantize_int8_experts(gate_up), quantize_int8_experts(down)
    assert torch.equal(
        moe_forward(x, ids, weights, q_gu, q_down), fused_moe(x, ids, weights, q_gu, q_down)
    )


def test_grouped_moe_rejects_the_cpu_int4_layout() -> None:
    x, ids, weights, gate_up, down = _moe_case(2)
    with pytest.raises(ValueError, match="nibble"):
        triton_fused_moe(x, ids, weights, quantize_int4_experts(gate_up, 32), down)


HEADS, NOPE, ROPE, RANK, V_DIM, BLOCK = 3, 16, 16, 32, 16, 4


def _mla_case() -> tuple[tuple[torch.Tensor, ...], dict[str, object]]:
    gen = torch.Generator().manual_seed(7)
    lens = [1, 9, 4, 12]
    max_blocks, num_blocks = 3, 14
    cache = torch.randn(num_blocks * BLOCK, RANK + ROPE, generator=gen)
    # each sequence gets distinct, shuffled blocks (block 0 stays as the padding block)
    pool = (torch.randperm(num_blocks - 1, generator=gen) + 1).tolist()
    tables = torch.zeros(len(lens), max_blocks, dtype=torch.long)
    for b, n in enumerate(lens):
        used = -(-n // BLOCK)
        tables[b, :used] = torch.tensor([pool.pop() for _ in range(used)])
    q_nope = torch.randn(len(lens), HEADS, NOPE, generator=gen)
    q_pe = torch.randn(len(lens), HEADS, ROPE, generator=gen)
    w_uk = torch.randn(HEADS, NOPE, RANK, generator=gen) * 0.2
    w_uv = torch.randn(HEADS, V_DIM, RANK, generator=gen) * 0.2
    scale = (NOPE + ROPE) ** -0.5
    args = (q_nope, q_pe, cache, tables, torch.tensor(lens))
    return args, {"block_size": BLOCK, "scale": scale, "w_uk": w_uk, "w_uv": w_uv}


def test_paged_mla_decode_matches_reference() -> None:
    args, kwargs = _mla_case()
    # on CPU the dispatcher runs the torch reference (paged_mla_attention) by default
    want = paged_mla_decode(*args, **kwargs)
    got = paged_mla_decode(*args, **kwargs, backend="triton")
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("splits", [2, 3])
def test_mla_context_splits_merge_to_the_unsplit_result(splits: int) -> None:
    # 3 splits of one block each: the 1-token sequence leaves two splits empty
    (q_nope, q_pe, cache, tables, lens), kwargs = _mla_case()
    q = torch.cat((torch.einsum("bhn,hnr->bhr", q_nope, kwargs["w_uk"]), q_pe), dim=-1)
    one = mla_decode_latent(q, cache, tables, lens, rank=RANK, block_size=BLOCK, splits=1)
    many = mla_decode_latent(q, cache, tables, lens, rank=RANK, block_size=BLOCK, splits=splits)
    torch.testing.assert_close(many, one, rtol=1e-5, atol=1e-6)


def test_choose_splits() -> None:
    assert choose_splits(programs=32, max_len=4096, block_size=64, multiprocessors=132) == 9
    assert choose_splits(programs=32, max_len=256, block_size=64, multiprocessors=132) == 1
    assert choose_splits(programs=512, max_len=4096, block_size=64, multiprocessors=132) == 1
