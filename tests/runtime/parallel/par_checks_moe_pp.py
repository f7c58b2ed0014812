"""Rank-side checks of pipeline stages (alone and with TP inside) and of FP8 shards."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import torch
from par_checks_tp import experts, mla, mlp
from par_common import context, deepseek, max_err, report

from deepseek_runtime.checkpoint.config import DeepseekConfig
from deepseek_runtime.checkpoint.weights import WeightStore
from deepseek_runtime.kernels.linear import linear
from deepseek_runtime.model.mlp import DenseMLP
from deepseek_runtime.model.moe import MoE, Router
from deepseek_runtime.model.norm import RMSNorm
from deepseek_runtime.parallel.config import ParallelConfig
from deepseek_runtime.parallel.experts import ExpertParallelExperts
from deepseek_runtime.parallel.groups import ParallelContext, build_context
from deepseek_runtime.parallel.mlp import ParallelMLP
from deepseek_runtime.parallel.pipeline import recv_activations, send_activations, stage_layers
from deepseek_runtime.parallel.vocab import ParallelLMHead, VocabParallelEmbedding


class ParallelBlock:
    """``h + mlp(norm(h))`` of layer ``index`` from the parallel parts (attention left out)."""

    def __init__(
        self, cfg: DeepseekConfig, store: WeightStore, index: int, ctx: ParallelContext
    ) -> None:
        p, hidden = f"model.layers.{index}", cfg.hidden_size
        self.norm = RMSNorm.load(store, f"{p}.post_attention_layernorm", hidden, cfg.rms_norm_eps)
        self.ctx, self.moe = ctx, cfg.is_moe_layer(index)
        if not self.moe:
            self.mlp = ParallelMLP(store, f"{p}.mlp", hidden, cfg.intermediate_size, ctx)
            return
        inter = cfg.moe_intermediate_size
        self.router = Router(cfg, store, f"{p}.mlp.gate")
        self.routed = ExpertParallelExperts(
            store,
            f"{p}.mlp.experts",
            ctx,
            num_experts=int(cfg.n_routed_experts or 0),
            hidden=hidden,
            inter=inter,
        )
        shared = inter * int(cfg.n_shared_experts or 0)
        self.mlp = ParallelMLP(
            store, f"{p}.mlp.shared_experts", hidden, shared, ctx, reduce_output=False
        )

    def __call__(self, h: torch.Tensor) -> torch.Tensor:
        x: torch.Tensor = self.norm(h)
        if not self.moe:
            dense: torch.Tensor = h + self.mlp(x)
            return dense
        ids, weights = self.router(x)
        partial = self.routed(x, ids, weights, reduce_output=False) + self.mlp(x)
        out: torch.Tensor = h + self.ctx.tp.all_reduce(partial)
        return out


def reference(cfg: DeepseekConfig, store: WeightStore, ids: torch.Tensor) -> list[torch.Tensor]:
    """Single process: hidden states after each layer, then the logits."""
    hidden, eps = cfg.hidden_size, cfg.rms_norm_eps
    h = store.get("model.embed_tokens.weight", (cfg.vocab_size, hidden))[ids]
    states = []
    for i in range(cfg.num_hidden_layers):
        p = f"model.layers.{i}"
        norm = RMSNorm.load(store, f"{p}.post_attention_layernorm", hidden, eps)
        block = (
            MoE(cfg, store, f"{p}.mlp")
            if cfg.is_moe_layer(i)
            else DenseMLP(store, f"{p}.mlp", hidden, cfg.intermediate_size)
        )
        h = h + block(norm(h))
        states.append(h)
    final = RMSNorm.load(store, "model.norm", hidden, eps)(h)
    states.append(linear(final, store.get("lm_head.weight", (cfg.vocab_size, hidden))))
    return states


def run_stages(ctx: ParallelContext, path: str) -> dict[str, Any]:
    """Each stage runs its layer range; activations pass by send / recv; compare each stage."""
    cfg, store = deepseek(path)
    ids = torch.randint(0, cfg.vocab_size, (6,))
    want = reference(cfg, store, ids)
    layers = stage_layers(cfg.num_hidden_layers, ctx)
    if ctx.is_first_stage:
        embed = VocabParallelEmbedding(
            store, "model.embed_tokens.weight", cfg.vocab_size, cfg.hidden_size, ctx
        )
        h = embed(ids)
    else:
        h = recv_activations(ctx)
    for index in layers:
        h = ParallelBlock(cfg, store, index, ctx)(h)
    if not ctx.is_last_stage:
        send_activations(h, ctx)
        return {"stage": report(max_err(h, want[layers[-1]]), layers=list(layers))}
    norm = RMSNorm.load(store, "model.norm", cfg.hidden_size, cfg.rms_norm_eps)
    head = ParallelLMHead(store, "lm_head.weight", cfg.vocab_size, cfg.hidden_size, ctx)
    return {"stage": report(max_err(head(norm(h)), want[-1]), layers=list(layers))}


def send_recv(ctx: ParallelContext) -> dict[str, Any]:
    gen = torch.Generator().manual_seed(1)
    samples = [
        torch.randn(5, 64, generator=gen),
        torch.randn(3, 7, generator=gen).to(torch.bfloat16),
        torch.arange(4),
        torch.randn(0, 64, generator=gen),
        torch.randn(2, 3, 4, generator=gen),
    ]
    if ctx.is_first_stage:
        for tensor in samples:
            send_activations(tensor, ctx)
        return {"send_recv": report(0.0, sent=len(samples))}
    got = [recv_activations(ctx) for _ in samples]
    same = all(g.dtype == s.dtype and g.shape == s.shape for g, s in zip(got, samples, strict=True))
    err = max(max_err(g, s) for g, s in zip(got, samples, strict=True)) if same else float("inf")
    return {"send_recv": report(err, received=len(got))}


def pp_suite(rank: int, world: int, ckpts: dict[str, str]) -> dict[str, Any]:
    """PP = world, TP = 1."""
    ctx = context(rank, world, 1)
    return {"pp_ranks": list(ctx.pp.ranks)} | send_recv(ctx) | run_stages(ctx, ckpts["v3"])


def tp2pp2_suite(rank: int, world: int, ckpts: dict[str, str]) -> dict[str, Any]:
    """TP = 2 inside each of 2 stages, EP over each stage's TP group."""
    ctx = context(rank, world, 2)
    out = {
        "tp_ranks": list(ctx.tp.ranks),
        "pp_ranks": list(ctx.pp.ranks),
        "ep_ranks": list(ctx.ep.ranks),
    }
    return out | send_recv(ctx) | run_stages(ctx, ckpts["v3"])


def fp8_suite(rank: int, world: int, ckpts: dict[str, str]) -> dict[str, Any]:
    """FP8 block-scaled shards, kept in FP8 and dequantized at load."""
    ctx = context(rank, world, world, expert=True)
    ctx_tp = context(rank, world, world, expert=False)
    path = ckpts["v3_fp8"]
    out: dict[str, Any] = {}
    out |= mlp(ctx, path, keep_fp8=True)
    out |= mla(ctx, path, "mla_fp8", keep_fp8=True)
    out |= mla(ctx, path, "mla_fp8_dequantized", keep_fp8=False)
    out |= experts(ctx, ctx_tp, path, keep_fp8=True)
    return out


def dead_peer_suite(rank: int, world: int, ckpts: dict[str, str]) -> dict[str, Any]:
    """Rank 1 leaves without joining a collective: rank 0's all-reduce must raise, not hang."""
    ctx = build_context(
        ParallelConfig(tensor=world, world_size=world, rank=rank), timeout=timedelta(seconds=5)
    )
    if rank != 0:
        return {"left": True}
    start = time.monotonic()
    try:
        ctx.tp.all_reduce(torch.ones(4))
    except RuntimeError as exc:
        return {"raised": type(exc).__name__, "seconds": time.monotonic() - start}
    return {"raised": None, "seconds": time.monotonic() - start}
