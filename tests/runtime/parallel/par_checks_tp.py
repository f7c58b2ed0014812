"""Rank-side checks of the tensor-parallel layers against single-process references."""

from __future__ import annotations

from typing import Any

import torch
from par_common import (
    context,
    deepseek,
    full_bytes,
    max_err,
    naive_mla,
    report,
    tensor_bytes,
)

from deepseek_runtime.checkpoint.dense_config import DenseConfig
from deepseek_runtime.checkpoint.model_config import load_model_config
from deepseek_runtime.checkpoint.weights import WeightStore
from deepseek_runtime.kernels.linear import linear
from deepseek_runtime.kernels.moe import fused_moe
from deepseek_runtime.model.mlp import DenseMLP
from deepseek_runtime.model.moe import MoE
from deepseek_runtime.model.norm import RMSNorm
from deepseek_runtime.parallel.attention import MLAParallelProjections, QKVParallelLinear
from deepseek_runtime.parallel.config import kv_head_bounds
from deepseek_runtime.parallel.experts import ExpertParallelExperts, TensorParallelExperts
from deepseek_runtime.parallel.groups import ParallelContext
from deepseek_runtime.parallel.linear import ColumnParallelLinear, RowParallelLinear
from deepseek_runtime.parallel.mlp import ParallelMLP
from deepseek_runtime.parallel.vocab import ParallelLMHead, VocabParallelEmbedding


def column_row(ctx: ParallelContext, path: str) -> dict[str, Any]:
    cfg, store = deepseek(path)
    hidden, inter = cfg.hidden_size, cfg.intermediate_size
    gate_w = store.get("model.layers.0.mlp.gate_proj.weight", (inter, hidden))
    down_w = store.get("model.layers.0.mlp.down_proj.weight", (hidden, inter))
    x, xi = torch.randn(5, hidden), torch.randn(5, inter)
    gathered = ColumnParallelLinear(
        store, "model.layers.0.mlp.gate_proj", hidden, inter, ctx, gather_output=True
    )
    local = ColumnParallelLinear(store, "model.layers.0.mlp.gate_proj", hidden, inter, ctx)
    row = RowParallelLinear(store, "model.layers.0.mlp.down_proj", inter, hidden, ctx)
    per = inter // ctx.tp.size
    cols = slice(ctx.tp.rank * per, (ctx.tp.rank + 1) * per)
    return {
        "column_gathered": report(max_err(gathered(x), linear(x, gate_w))),
        "column_local": report(
            max_err(local(x), linear(x, gate_w)[:, cols]),
            bytes=local.nbytes,
            full_bytes=tensor_bytes(gate_w),
        ),
        "row": report(
            max_err(row(xi[:, cols]), linear(xi, down_w)),
            bytes=row.nbytes,
            full_bytes=tensor_bytes(down_w),
        ),
    }


def mlp(ctx: ParallelContext, path: str, keep_fp8: bool = False) -> dict[str, Any]:
    cfg, store = deepseek(path, keep_fp8)
    p, hidden, inter = "model.layers.0.mlp", cfg.hidden_size, cfg.intermediate_size
    layer = ParallelMLP(store, p, hidden, inter, ctx)
    ref = DenseMLP(store, p, hidden, inter)
    x = torch.randn(6, hidden)
    full = full_bytes(store, [f"{p}.{n}_proj.weight" for n in ("gate", "up", "down")])
    name = "mlp_fp8" if keep_fp8 else "mlp"
    return {name: report(max_err(layer(x), ref(x)), bytes=layer.nbytes, full_bytes=full)}


def mla(ctx: ParallelContext, path: str, name: str, keep_fp8: bool = False) -> dict[str, Any]:
    """Heads split over ranks: q, kv_b, o_proj of the local heads, then the all-reduce."""
    cfg, store = deepseek(path, keep_fp8)
    p, hidden, heads = "model.layers.0.self_attn", cfg.hidden_size, cfg.num_attention_heads
    rank_dim, kv_width = cfg.kv_lora_rank, cfg.qk_nope_head_dim + cfg.v_head_dim
    proj = MLAParallelProjections(cfg, store, p, ctx)
    kv_norm = RMSNorm.load(store, f"{p}.kv_a_layernorm", rank_dim, 1e-6)
    bias = cfg.attention_bias
    ob = store.get(f"{p}.o_proj.bias", (hidden,)) if bias else None
    kv_ab = store.get(f"{p}.kv_a_proj_with_mqa.bias", (cfg.latent_dim,)) if bias else None
    kv_a = store.get(f"{p}.kv_a_proj_with_mqa.weight", (cfg.latent_dim, hidden))
    kv_b = store.get(f"{p}.kv_b_proj.weight", (heads * kv_width, rank_dim))
    o_w = store.get(f"{p}.o_proj.weight", (hidden, heads * cfg.v_head_dim))
    x = torch.randn(7, hidden)
    replicated = full_bytes(store, [f"{p}.kv_a_proj_with_mqa.weight"]) + tensor_bytes(kv_ab, ob)
    if cfg.q_lora_rank is None:
        q_name = f"{p}.q_proj.weight"
        q_w = store.get(q_name, (heads * cfg.qk_head_dim, hidden))
        q_in = x
    else:
        q_norm = RMSNorm.load(store, f"{p}.q_a_layernorm", cfg.q_lora_rank, 1e-6)
        q_a = store.get(f"{p}.q_a_proj.weight", (cfg.q_lora_rank, hidden))
        q_name = f"{p}.q_b_proj.weight"
        q_w = store.get(q_name, (heads * cfg.qk_head_dim, cfg.q_lora_rank))
        q_in = q_norm(linear(x, q_a))
        replicated += full_bytes(store, [f"{p}.q_a_proj.weight"])
    sharded = full_bytes(store, [q_name, f"{p}.kv_b_proj.weight", f"{p}.o_proj.weight"])
    kv = linear(x, kv_a, kv_ab)
    c_kv, k_pe = kv_norm(kv[:, :rank_dim]), kv[:, rank_dim:]
    heads_kv_b = kv_b.view(heads, kv_width, rank_dim)
    want = linear(naive_mla(cfg, linear(q_in, q_w), c_kv, k_pe, heads_kv_b), o_w, ob)
    got = proj.o_proj(naive_mla(cfg, proj.query(q_in), c_kv, k_pe, proj.kv_b_per_head()))
    return {
        name: report(
            max_err(got, want),
            bytes=proj.nbytes,
            full_bytes=replicated + sharded,
            replicated_bytes=replicated,
        )
    }


def qkv(ctx: ParallelContext, path: str, name: str) -> dict[str, Any]:
    cfg = load_model_config(path)
    assert isinstance(cfg, DenseConfig)
    store = WeightStore(path)
    d, heads, kv_heads = cfg.attn_head_dim, cfg.num_attention_heads, cfg.num_key_value_heads
    assert kv_heads is not None
    p, hidden = "model.layers.0.self_attn", cfg.hidden_size
    layer = QKVParallelLinear(
        store,
        p,
        ctx,
        hidden=hidden,
        head_dim=d,
        num_heads=heads,
        num_kv_heads=kv_heads,
        bias=cfg.qkv_bias,
    )
    x = torch.randn(5, hidden)
    full = {}
    for part, rows in (("q", heads * d), ("k", kv_heads * d), ("v", kv_heads * d)):
        b = store.get(f"{p}.{part}_proj.bias", (rows,)) if cfg.qkv_bias else None
        full[part] = linear(x, store.get(f"{p}.{part}_proj.weight", (rows, hidden)), b)
    per = heads // ctx.tp.size
    h0 = ctx.tp.rank * per
    k0, k1 = kv_head_bounds(kv_heads, ctx.tp.size, ctx.tp.rank)
    q, k, v = layer(x)
    errs = [
        max_err(q, full["q"][:, h0 * d : (h0 + per) * d]),
        max_err(k, full["k"][:, k0 * d : k1 * d]),
        max_err(v, full["v"][:, k0 * d : k1 * d]),
    ]
    return {name: report(max(errs), kv_heads=[k0, k1], q_heads=[h0, h0 + per])}


def vocab(ctx: ParallelContext, path: str) -> dict[str, Any]:
    cfg, store = deepseek(path)
    v, hidden = cfg.vocab_size, cfg.hidden_size
    embed = VocabParallelEmbedding(store, "model.embed_tokens.weight", v, hidden, ctx)
    head = ParallelLMHead(store, "lm_head.weight", v, hidden, ctx)
    e_full = store.get("model.embed_tokens.weight", (v, hidden))
    h_full = store.get("lm_head.weight", (v, hidden))
    ids = torch.cat((torch.tensor([0, v // 2 - 1, v // 2, v - 1]), torch.randint(0, v, (12,))))
    h = torch.randn(4, hidden)
    return {
        "embedding": report(
            max_err(embed(ids), e_full[ids]), bytes=embed.nbytes, full_bytes=tensor_bytes(e_full)
        ),
        "lm_head": report(
            max_err(head(h), linear(h, h_full)), bytes=head.nbytes, full_bytes=tensor_bytes(h_full)
        ),
    }


def experts(
    ctx: ParallelContext, ctx_tp: ParallelContext, path: str, keep_fp8: bool = False
) -> dict[str, Any]:
    """EP (whole experts per rank) and TP (slice of each) against the single-process MoE."""
    cfg, store = deepseek(path, keep_fp8)
    p, hidden, inter = "model.layers.1.mlp", cfg.hidden_size, cfg.moe_intermediate_size
    n_exp = int(cfg.n_routed_experts or 0)
    ref = MoE(cfg, store, p)
    x = torch.randn(9, hidden)
    ids, weights = ref.router(x)
    kw = {"num_experts": n_exp, "hidden": hidden, "inter": inter}
    routed = ExpertParallelExperts(store, f"{p}.experts", ctx, **kw)
    shared = ParallelMLP(
        store,
        f"{p}.shared_experts",
        hidden,
        inter * int(cfg.n_shared_experts or 0),
        ctx,
        reduce_output=False,
    )
    block = ctx.tp.all_reduce(routed(x, ids, weights, reduce_output=False) + shared(x))
    ref_routed = fused_moe(x, ids, weights, ref.w_gate_up, ref.w_down)
    mine = torch.tensor_split(torch.arange(x.shape[0]), ctx.ep.size)[ctx.ep.rank]
    scattered = routed(x[mine], ids[mine], weights[mine], tokens_replicated=False)
    tp_routed = TensorParallelExperts(store, f"{p}.experts", ctx_tp, **kw)
    names = [
        f"{p}.experts.{e}.{n}_proj.weight" for e in range(n_exp) for n in ("gate", "up", "down")
    ]
    full = full_bytes(store, names)
    tag = "_fp8" if keep_fp8 else ""
    return {
        f"moe_block_ep{tag}": report(max_err(block, ref(x))),
        f"ep_routed{tag}": report(
            max_err(routed(x, ids, weights), ref_routed), bytes=routed.nbytes, full_bytes=full
        ),
        f"ep_gathered_tokens{tag}": report(max_err(scattered, ref_routed[mine]), rows=len(mine)),
        f"tp_routed{tag}": report(
            max_err(tp_routed(x, ids, weights), ref_routed), bytes=tp_routed.nbytes, full_bytes=full
        ),
    }


def tp_suite(rank: int, world: int, ckpts: dict[str, str]) -> dict[str, Any]:
    """Every TP layer at TP = world (EP on, plus a TP-experts context with EP off)."""
    ctx = context(rank, world, world, expert=True)
    ctx_tp = context(rank, world, world, expert=False)
    out: dict[str, Any] = {"tp_ranks": list(ctx.tp.ranks), "ep_ranks": list(ctx.ep.ranks)}
    out |= column_row(ctx, ckpts["v3"])
    out |= mlp(ctx, ckpts["v3"])
    out |= mla(ctx, ckpts["v3"], "mla_q_lora")
    out |= mla(ctx, ckpts["v2_bias"], "mla_q_proj_bias")
    out |= qkv(ctx, ckpts["qwen2"], "qkv_qwen2")
    out |= qkv(ctx, ckpts["llama"], "qkv_llama")
    out |= vocab(ctx, ckpts["v3"])
    out |= experts(ctx, ctx_tp, ckpts["v3"])
    return out
