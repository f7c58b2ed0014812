"""Grouped-query attention (Qwen2 / Llama) over a paged K/V cache.

Called by :class:`~deepseek_runtime.model.dense.DenseDecoderLayer`. Per token::

    q = x W_q^T (+ b_q)  -> [H, d]       k = x W_k^T (+ b_k), v = x W_v^T (+ b_v) -> [KVH, d]
    q, k = rope(q), rope(k)              (whole head, rotate-half layout, as transformers)
    out  = softmax(q k^T / sqrt(d)) v    (query head h reads KV head h // (H / KVH))
    y    = out W_o^T (+ b_o)

The rotated keys and the values are cached (see
:mod:`deepseek_runtime.kernels.paged_gqa_attention` for the slot layout); q/k/v are one
fused GEMM.

With a :class:`~deepseek_runtime.parallel.groups.ParallelContext` the layer holds its TP
rank's query heads and the KV heads they read
(:class:`~deepseek_runtime.parallel.attention.QKVParallelLinear`: split, or one replicated
head when TP exceeds the KV heads), caches only those, and ``o_proj`` all-reduces.
"""

from __future__ import annotations

import torch

from deepseek_runtime.checkpoint.dense_config import DenseConfig
from deepseek_runtime.checkpoint.weights import WeightStore
from deepseek_runtime.kernels.gqa_decode_plan import DecodePlanner
from deepseek_runtime.kernels.kv_cache import write_kv
from deepseek_runtime.kernels.linear import concat_rows, linear
from deepseek_runtime.kernels.paged_attention import PagedAttentionMetadata
from deepseek_runtime.kernels.paged_gqa_attention import paged_gqa_attention
from deepseek_runtime.model.rope import RotaryEmbedding
from deepseek_runtime.parallel.attention import QKVParallelLinear, head_bounds
from deepseek_runtime.parallel.groups import ParallelContext
from deepseek_runtime.parallel.linear import RowParallelLinear


class GQAAttention:
    """One layer's q/k/v/o weights and forward pass."""

    def __init__(
        self,
        config: DenseConfig,
        store: WeightStore,
        prefix: str,
        ctx: ParallelContext | None = None,
        planner: DecodePlanner | None = None,
    ) -> None:
        # the model's layers share one planner: a step's decode tiling is made once
        self.planner = planner or DecodePlanner()
        self.n_heads, self.n_kv_heads = config.num_attention_heads, config.num_kv_heads
        self.head_dim = config.attn_head_dim
        self.scale = self.head_dim**-0.5
        self.o_parallel: RowParallelLinear | None = None
        if ctx is not None:
            self._load_parallel(config, store, prefix, ctx)
            return
        hidden = config.hidden_size
        q_out, kv_out = self.n_heads * self.head_dim, self.n_kv_heads * self.head_dim
        q = store.get_linear(f"{prefix}.q_proj.weight", (q_out, hidden))
        k = store.get_linear(f"{prefix}.k_proj.weight", (kv_out, hidden))
        v = store.get_linear(f"{prefix}.v_proj.weight", (kv_out, hidden))
        self.qkv = concat_rows(concat_rows(q, k), v)
        self.qkv_bias: torch.Tensor | None = None
        if config.qkv_bias:
            self.qkv_bias = torch.cat(
                [
                    store.get(f"{prefix}.{name}_proj.bias", (size,))
                    for name, size in (("q", q_out), ("k", kv_out), ("v", kv_out))
                ]
            )
        self.o_proj = store.get_linear(f"{prefix}.o_proj.weight", (hidden, q_out))
        self.o_bias = store.get(f"{prefix}.o_proj.bias", (hidden,)) if config.o_bias else None
        self.q_out, self.kv_out = q_out, kv_out

    def _load_parallel(
        self, config: DenseConfig, store: WeightStore, prefix: str, ctx: ParallelContext
    ) -> None:
        """This TP rank's query heads, the KV heads they read, and its ``o_proj`` columns."""
        d, hidden = self.head_dim, config.hidden_size
        qkv = QKVParallelLinear(
            store,
            prefix,
            ctx,
            hidden=hidden,
            head_dim=d,
            num_heads=self.n_heads,
            num_kv_heads=self.n_kv_heads,
            bias=config.qkv_bias,
        )
        self.qkv, self.qkv_bias = qkv.weight, qkv.bias
        h0, h1 = head_bounds(self.n_heads, ctx)
        self.o_parallel = RowParallelLinear(
            store,
            f"{prefix}.o_proj",
            self.n_heads * d,
            hidden,
            ctx,
            bias=config.o_bias,
            bounds=(h0 * d, h1 * d),
        )
        self.n_heads, self.n_kv_heads = qkv.heads, qkv.kv_heads
        self.q_out, self.kv_out = qkv.heads * d, qkv.kv_heads * d

    def __call__(
        self,
        x: torch.Tensor,
        rope: RotaryEmbedding,
        cos_sin: tuple[torch.Tensor, torch.Tensor],
        cache: torch.Tensor,
        meta: PagedAttentionMetadata,
    ) -> torch.Tensor:
        """``x`` ``[T, hidden]`` -> ``[T, hidden]``; writes the T new K/V rows into ``cache``."""
        n_tokens = x.shape[0]
        qkv = linear(x, self.qkv, self.qkv_bias)
        k_end = self.q_out + self.kv_out
        # q and k heads sit side by side in the fused output: one rotation for both
        qk = qkv[:, :k_end].view(n_tokens, self.n_heads + self.n_kv_heads, self.head_dim)
        qk = rope.apply(qk, *cos_sin)
        q, k = qk[:, : self.n_heads], qk[:, self.n_heads :]
        write_kv(cache, meta.slot_mapping, k, qkv[:, k_end:].view_as(k))
        out = paged_gqa_attention(
            q, cache, meta, num_kv_heads=self.n_kv_heads, scale=self.scale, planner=self.planner
        )
        if self.o_parallel is not None:
            return self.o_parallel(out.reshape(n_tokens, -1))
        return linear(out.reshape(n_tokens, -1), self.o_proj, self.o_bias)
