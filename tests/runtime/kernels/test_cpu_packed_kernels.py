"""The native CPU kernels (``torch.ops.dsr_cpu``) against torch on the same fp32 weights.

The library is compiled here with the machine's C++ compiler (``kernels.cpu.build``); a
machine of this project's kind has one, so a build failure fails these tests instead of
skipping them.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from deepseek_runtime.checkpoint.config import ConfigError
from deepseek_runtime.checkpoint.cpu_kernels import decide, ineligible_reason
from deepseek_runtime.kernels.cpu import build
from deepseek_runtime.kernels.cpu.packed import (
    PackedWeight,
    StackedPackedWeights,
    pack_panels,
    unpack_panels,
)
from deepseek_runtime.kernels.linear import concat_rows, linear
from deepseek_runtime.kernels.moe import fused_moe, moe_forward
from deepseek_runtime.kernels.norm import rms_norm
from deepseek_runtime.kernels.paged_attention import build_metadata, paged_mla_attention
from deepseek_runtime.kernels.paged_gqa_attention import paged_gqa_attention

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module", autouse=True)
def library() -> build.KernelLibrary:
    loaded = build.load()
    assert loaded.loaded, loaded.reason
    return loaded


def _close(got: torch.Tensor, want: torch.Tensor) -> None:
    assert got.shape == want.shape
    if want.numel() == 0:
        return
    scale = want.abs().max().clamp_min(1.0)
    assert (got - want).abs().max() <= 2e-6 * scale * max(1, want.shape[-1]) ** 0.5


@pytest.mark.parametrize(("out", "inp"), [(1, 1), (16, 8), (17, 3), (40, 64), (513, 257)])
def test_pack_roundtrip_and_padding(out: int, inp: int) -> None:
    dense = torch.randn(out, inp)
    panels = pack_panels(dense)
    assert panels.shape == (-(-out // 16), inp, 16)
    assert torch.equal(unpack_panels(panels, out), dense)
    assert torch.count_nonzero(panels.transpose(1, 2).reshape(-1, inp)[out:]) == 0


def test_pack_refuses_what_the_kernel_cannot_read() -> None:
    with pytest.raises(ValueError, match="float32"):
        pack_panels(torch.randn(4, 4, dtype=torch.bfloat16))
    with pytest.raises(ValueError, match="2-D"):
        pack_panels(torch.randn(2, 4, 4))


@pytest.mark.parametrize("rows", [0, 1, 2, 3, 4, 5, 6, 7, 12, 13, 64, 300])
@pytest.mark.parametrize(("out", "inp"), [(16, 32), (33, 7), (512, 256)])
def test_linear_matches_torch(rows: int, out: int, inp: int) -> None:
    weight, bias, x = torch.randn(out, inp), torch.randn(out), torch.randn(rows, inp)
    packed = PackedWeight.pack(weight)
    _close(linear(x, packed), F.linear(x, weight))
    _close(linear(x, packed, bias), F.linear(x, weight, bias))
    assert linear(x, packed).shape == (rows, out)


def test_linear_takes_leading_dims_and_strided_rows() -> None:
    weight = torch.randn(48, 20)
    packed = PackedWeight.pack(weight)
    x = torch.randn(3, 5, 20)
    _close(packed.apply(x), F.linear(x, weight))
    wide = torch.randn(9, 50)
    view = wide[:, 10:30]  # row stride 50, unit inner stride: read in place
    _close(packed.apply(view), F.linear(view, weight))
    columns = torch.randn(20, 9).t()  # inner stride 9: copied first
    _close(packed.apply(columns), F.linear(columns, weight))


def test_a_row_does_not_depend_on_its_batch() -> None:
    """Bit-identical results for a row alone and inside any batch (batch invariance)."""
    weight = torch.randn(100, 64)
    packed = PackedWeight.pack(weight)
    x = torch.randn(23, 64)
    whole = packed.apply(x)
    for r in (0, 5, 6, 11, 22):
        assert torch.equal(packed.apply(x[r : r + 1]), whole[r : r + 1])
    assert torch.equal(packed.apply(x[7:19]), whole[7:19])


def test_bad_inputs_are_errors_not_garbage() -> None:
    packed = PackedWeight.pack(torch.randn(16, 8))
    with pytest.raises(ValueError, match="8"):
        packed.apply(torch.randn(2, 9))
    with pytest.raises(RuntimeError, match="float32"):
        packed.apply(torch.randn(2, 8, dtype=torch.float64))
    with pytest.raises(RuntimeError, match="wrong shape"):
        torch.ops.dsr_cpu.linear_packed(torch.randn(2, 8), packed.panels, 40, None)


def test_fused_rows_stay_packed() -> None:
    a, b = torch.randn(24, 16), torch.randn(8, 16)
    fused = concat_rows(PackedWeight.pack(a), PackedWeight.pack(b))
    assert isinstance(fused, PackedWeight)
    assert torch.equal(fused.dequantize(), torch.cat((a, b)))


def _routing(tokens: int, experts: int, k: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    ids = torch.stack([torch.randperm(experts, generator=gen)[:k] for _ in range(tokens)])
    weights = torch.rand(tokens, k, generator=gen)
    return ids, weights


@pytest.mark.parametrize(("tokens", "experts", "k"), [(1, 4, 2), (16, 16, 4), (200, 8, 3)])
def test_moe_matches_the_reference_loop(tokens: int, experts: int, k: int) -> None:
    hidden, inter = 40, 24
    gate_up = torch.randn(experts, 2 * inter, hidden) / hidden**0.5
    down = torch.randn(experts, hidden, inter) / inter**0.5
    x = torch.randn(tokens, hidden)
    ids, weights = _routing(tokens, experts, k, seed=tokens)
    packed_gu = StackedPackedWeights.stack([PackedWeight.pack(w) for w in gate_up])
    packed_dn = StackedPackedWeights.stack([PackedWeight.pack(w) for w in down])
    want = fused_moe(x, ids, weights, gate_up, down)
    _close(moe_forward(x, ids, weights, packed_gu, packed_dn), want)
    # the per-expert reference loop also runs over packed stacks (one PackedWeight each)
    _close(fused_moe(x, ids, weights, packed_gu, packed_dn), want)


def test_moe_token_does_not_depend_on_its_batch() -> None:
    experts, hidden, inter = 6, 32, 16
    gu = StackedPackedWeights.stack(
        [PackedWeight.pack(torch.randn(2 * inter, hidden)) for _ in range(experts)]
    )
    dn = StackedPackedWeights.stack(
        [PackedWeight.pack(torch.randn(hidden, inter)) for _ in range(experts)]
    )
    x = torch.randn(30, hidden)
    ids, weights = _routing(30, experts, 2, seed=3)
    whole = moe_forward(x, ids, weights, gu, dn)
    for t in (0, 13, 29):
        alone = moe_forward(x[t : t + 1], ids[t : t + 1], weights[t : t + 1], gu, dn)
        assert torch.equal(alone, whole[t : t + 1])
    assert moe_forward(x[:0], ids[:0], weights[:0], gu, dn).shape == (0, hidden)


def test_moe_refuses_an_expert_id_out_of_range() -> None:
    gu = StackedPackedWeights.stack([PackedWeight.pack(torch.randn(32, 16))] * 2)
    dn = StackedPackedWeights.stack([PackedWeight.pack(torch.randn(16, 16))] * 2)
    with pytest.raises(RuntimeError, match="out of range"):
        moe_forward(torch.randn(1, 16), torch.tensor([[2]]), torch.ones(1, 1), gu, dn)


CPU, CUDA = torch.device("cpu"), torch.device("cuda")


@pytest.mark.parametrize(
    ("device", "dtype", "dense", "parallel", "expected"),
    [
        (CPU, torch.float32, True, False, None),
        (CUDA, torch.float32, True, False, "on CPU"),
        (CPU, torch.bfloat16, True, False, "fp32"),
        (CPU, torch.float32, False, False, "quantized"),
        (CPU, torch.float32, True, True, "parallel"),
    ],
)
def test_which_models_can_use_the_kernels(
    device: torch.device, dtype: torch.dtype, dense: bool, parallel: bool, expected: str | None
) -> None:
    reason = ineligible_reason(device, dtype, dense_weights=dense, parallel=parallel)
    assert reason is None if expected is None else expected in (reason or "")


def test_cpu_kernels_choice() -> None:
    assert decide("auto", None, None).packed
    assert decide("packed", None, None).packed
    assert not decide("torch", None, None).packed
    fallback = decide("auto", None, "no C++ compiler found")
    assert not fallback.packed and fallback.reason == "no C++ compiler found"
    assert not decide("auto", "the model runs bfloat16", None).packed
    with pytest.raises(ConfigError, match="--cpu-kernels packed: the model runs bfloat16"):
        decide("packed", "the model runs bfloat16", None)
    with pytest.raises(ConfigError, match="no C\\+\\+ compiler"):
        decide("packed", None, "no C++ compiler found")
    with pytest.raises(ConfigError, match="expected one of"):
        decide("fast", None, None)


def test_library_key_follows_the_source_torch_and_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    key = build.library_key()
    assert key == build.library_key()
    monkeypatch.setattr(build, "FLAGS", (*build.FLAGS, "-DEXTRA"))
    assert build.library_key() != key
    monkeypatch.undo()
    monkeypatch.setattr(torch, "__version__", "0.0.0")
    assert build.library_key() != key


def test_a_prebuilt_library_needs_no_compiler(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, library: build.KernelLibrary
) -> None:
    """An image ships the library it built and no compiler: the cached file is used; an
    empty cache without a compiler is a reason naming both."""
    assert library.path is not None
    monkeypatch.setenv("CXX", "no-such-compiler-dsr")
    shutil.copy(library.path, tmp_path / library.path.name)
    assert build.build(tmp_path) == tmp_path / library.path.name
    with pytest.raises(RuntimeError, match=r"no C\+\+ compiler.*no prebuilt"):
        build.build(tmp_path / "empty")


def _paged_batch(
    lengths: list[int], block_size: int, seed: int
) -> tuple[list[tuple[int, int, list[int]]], int]:
    """Decode chunks (one new token each) over shuffled block tables, and the block count."""
    gen = torch.Generator().manual_seed(seed)
    needed = [-(-n // block_size) for n in lengths]
    total = sum(needed) + 3
    free = torch.randperm(total, generator=gen).tolist()
    chunks = []
    for n, blocks in zip(lengths, needed, strict=True):
        table, free = free[:blocks], free[blocks:]
        chunks.append((n - 1, 1, table))
    return chunks, total


@pytest.mark.parametrize(("heads", "rank", "block_size"), [(8, 512, 16), (3, 32, 4), (16, 128, 8)])
def test_mla_decode_reads_blocks_in_place_like_the_tiled_path(
    heads: int, rank: int, block_size: int
) -> None:
    lengths = [1, 2, 17, 40, 5, 64, 33]
    chunks, blocks = _paged_batch(lengths, block_size, seed=heads)
    rope, nope, v_dim = 16, 24, 20
    gen = torch.Generator().manual_seed(1)
    cache = torch.randn(blocks * block_size, rank + rope, generator=gen)
    w_uk = torch.randn(heads, nope, rank, generator=gen) / rank**0.5
    w_uv = torch.randn(heads, v_dim, rank, generator=gen) / rank**0.5
    q_nope = torch.randn(len(lengths), heads, nope, generator=gen)
    q_pe = torch.randn(len(lengths), heads, rope, generator=gen)
    outs = []
    for native in (False, True):
        meta = build_metadata(chunks, block_size, native_cpu=native)
        outs.append(paged_mla_attention(q_nope, q_pe, cache, meta, scale=0.2, w_uk=w_uk, w_uv=w_uv))
    _close(outs[1], outs[0])


@pytest.mark.parametrize(("heads", "kv_heads", "head_dim"), [(8, 2, 64), (4, 4, 16), (12, 3, 32)])
def test_gqa_decode_reads_blocks_in_place_like_the_tiled_path(
    heads: int, kv_heads: int, head_dim: int
) -> None:
    block_size = 4
    lengths = [3, 1, 9, 30, 16, 17]
    chunks, blocks = _paged_batch(lengths, block_size, seed=heads + kv_heads)
    # a prefill chunk in the same step still takes its own path
    prefill_table = list(range(blocks, blocks + 3))
    chunks.append((2, 7, prefill_table))
    gen = torch.Generator().manual_seed(2)
    cache = torch.randn((blocks + 3) * block_size, 2 * kv_heads * head_dim, generator=gen)
    q = torch.randn(len(lengths) + 7, heads, head_dim, generator=gen)
    outs = []
    for native in (False, True):
        meta = build_metadata(chunks, block_size, native_cpu=native)
        outs.append(
            paged_gqa_attention(q, cache, meta, num_kv_heads=kv_heads, scale=head_dim**-0.5)
        )
    _close(outs[1], outs[0])


def test_paged_decode_refuses_bad_tables() -> None:
    cache = torch.randn(8 * 4, 2 * 2 * 16)
    q = torch.randn(1, 4, 16)
    with pytest.raises(RuntimeError, match="block id out of range"):
        torch.ops.dsr_cpu.gqa_decode(q, cache, torch.tensor([[9]]), torch.tensor([3]), 4, 2, 0.25)
    with pytest.raises(RuntimeError, match="out of range"):
        torch.ops.dsr_cpu.gqa_decode(q, cache, torch.tensor([[0]]), torch.tensor([5]), 4, 2, 0.25)


@pytest.mark.parametrize("inter", [1, 8, 37, 256])
def test_silu_mul_matches_torch(inter: int) -> None:
    gate_up = torch.randn(13, 2 * inter) * 4
    want = F.silu(gate_up[:, :inter]) * gate_up[:, inter:]
    _close(torch.ops.dsr_cpu.silu_mul(gate_up, inter), want)
    extreme = torch.tensor([[-200.0, -30.0, 0.0, 30.0, 200.0, 1e-8, -1e-8, 5.0] * 2])
    got = torch.ops.dsr_cpu.silu_mul(extreme, 8)
    assert torch.isfinite(got).all()
    _close(got, F.silu(extreme[:, :8]) * extreme[:, 8:])


@pytest.mark.parametrize("hidden", [1, 8, 30, 512])
def test_rms_norm_matches_the_reference(hidden: int) -> None:
    x, weight = torch.randn(9, hidden) * 3, torch.randn(hidden)
    _close(torch.ops.dsr_cpu.rms_norm(x, weight, 1e-6), rms_norm(x, weight, 1e-6))
    strided = torch.randn(9, hidden + 5)[:, 2 : 2 + hidden]
    _close(torch.ops.dsr_cpu.rms_norm(strided, weight, 1e-6), rms_norm(strided, weight, 1e-6))
