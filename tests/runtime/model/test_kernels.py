"""CPU reference kernels: the two MLA attention forms agree; fused MoE equals a per-token loop."""

from __future__ import annotations

import pytest
import torch

from deepseek_runtime.kernels import paged_attention
from deepseek_runtime.kernels.moe import fused_moe
from deepseek_runtime.kernels.paged_attention import build_metadata, paged_mla_attention

pytestmark = pytest.mark.unit


def _naive_mla(
    q: tuple[torch.Tensor, torch.Tensor],
    latents: torch.Tensor,
    weights: tuple[torch.Tensor, torch.Tensor],
    start: int,
    scale: float = 0.3,
) -> torch.Tensor:
    """Textbook MLA for one sequence: expand K/V per head, causal softmax attention."""
    q_nope, q_pe = q
    w_uk, w_uv = weights
    rank = w_uk.shape[2]
    c, k_pe = latents[:, :rank], latents[:, rank:]
    k = torch.einsum("lr,hnr->lhn", c, w_uk)
    v = torch.einsum("lr,hvr->lhv", c, w_uv)
    out = []
    for i in range(q_nope.shape[0]):
        ctx = start + i + 1
        s = torch.einsum("hn,lhn->hl", q_nope[i], k[:ctx]) + torch.einsum(
            "hp,lp->hl", q_pe[i], k_pe[:ctx]
        )
        p = torch.softmax(s * scale, dim=-1)
        out.append(torch.einsum("hl,lhv->hv", p, v[:ctx]))
    return torch.stack(out)


@pytest.mark.parametrize("tiled", [False, True])
@pytest.mark.parametrize("form", ["absorbed", "expanded", "auto"])
def test_prefill_forms_and_decode_match_naive_attention(
    form: str, tiled: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if tiled:  # one query row (or decode row) per tile
        monkeypatch.setattr(paged_attention, "SCORE_BUDGET", 1)
    g = torch.Generator().manual_seed(0)
    heads, nope, rope, rank, v_dim = 3, 8, 4, 12, 6
    w_uk = torch.randn(heads, nope, rank, generator=g)
    w_uv = torch.randn(heads, v_dim, rank, generator=g)
    cache = torch.randn(40, rank + rope, generator=g)  # 10 blocks of 4 slots
    table = torch.tensor([7, 2, 9, 0, 5])  # a sequence of 17 tokens in scattered blocks
    pos = torch.arange(17)
    slots = table[pos // 4] * 4 + pos % 4
    # query rows: a chunk of positions 10..16 (7 tokens), then a decode at position 5
    q_nope = torch.randn(8, heads, nope, generator=g)
    q_pe = torch.randn(8, heads, rope, generator=g)
    # chunk 0: positions 10..16 (7 tokens after 10 cached); chunk 1: a decode at position 5
    meta = build_metadata([(10, 7, table.tolist()), (5, 1, table[:2].tolist())], block_size=4)
    assert meta.slot_mapping.tolist() == torch.cat((slots[10:17], slots[5:6])).tolist()
    assert meta.query_start_loc.tolist() == [0, 7, 8] and meta.seq_lens.tolist() == [17, 6]
    assert meta.block_tables.tolist() == [[7, 2, 9, 0, 5], [7, 2, 0, 0, 0]]
    assert meta.decode_idx.tolist() == [1] and meta.prefill_spans == ((0, 0, 7, 17),)
    out = paged_mla_attention(
        q_nope, q_pe, cache, meta, scale=0.3, w_uk=w_uk, w_uv=w_uv, prefill_form=form
    )
    latents = cache[slots]
    expected_chunk = _naive_mla((q_nope[:7], q_pe[:7]), latents, (w_uk, w_uv), 10)
    expected_decode = _naive_mla((q_nope[7:], q_pe[7:]), latents[:6], (w_uk, w_uv), 5)
    assert torch.allclose(out[:7], expected_chunk, atol=1e-5)
    assert torch.allclose(out[7:], expected_decode, atol=1e-5)


def test_fused_moe_equals_per_token_loop() -> None:
    g = torch.Generator().manual_seed(1)
    n, hidden, inter, experts, k = 13, 10, 6, 5, 2
    x = torch.randn(n, hidden, generator=g)
    w_gate_up = torch.randn(experts, 2 * inter, hidden, generator=g)
    w_down = torch.randn(experts, hidden, inter, generator=g)
    ids = torch.stack([torch.randperm(experts, generator=g)[:k] for _ in range(n)])
    weights = torch.rand(n, k, generator=g)
    out = fused_moe(x, ids, weights, w_gate_up, w_down)
    for t in range(n):
        want = torch.zeros(hidden)
        for j in range(k):
            e = int(ids[t, j])
            gate_up = w_gate_up[e] @ x[t]
            h = torch.nn.functional.silu(gate_up[:inter]) * gate_up[inter:]
            want += weights[t, j] * (w_down[e] @ h)
        assert torch.allclose(out[t], want, atol=1e-5)
    # a list of per-expert weights works too; no tokens gives zeros
    as_list = fused_moe(x, ids, weights, list(w_gate_up), list(w_down))
    assert torch.allclose(as_list, out)
    assert fused_moe(x[:0], ids[:0], weights[:0], w_gate_up, w_down).shape == (0, hidden)
