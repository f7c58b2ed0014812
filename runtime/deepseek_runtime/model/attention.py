"""Multi-head Latent Attention (MLA) over the paged latent cache.

Called by :class:`~deepseek_runtime.model.deepseek.DecoderLayer`. Per token::

    q      = q_b(norm(q_a(x)))  or  q_proj(x)          -> [H, nope | rope]
    c, kpe = kv_a_proj_with_mqa(x)  -> norm(c), rope(kpe)  (cached: [c | kpe])
    kv_b   = [W_uk (nope rows) ; W_uv (v rows)] per head, applied to c

Only the latent ``[c | kpe]`` is cached. The attention kernel either absorbs ``W_uk`` /
``W_uv`` into the query and output (decode: nothing is expanded per cached token) or
expands the chunk's context once (long prefill chunks), whichever costs less; both give
the same numbers up to float rounding. The new tokens' latents are written into the cache
before attention reads it.

With a :class:`~deepseek_runtime.parallel.groups.ParallelContext` the layer holds only its
TP rank's heads (:class:`~deepseek_runtime.parallel.attention.MLAParallelProjections`):
the latent projections are replicated, so each rank caches the whole latent (as vLLM
does for MLA under TP), attends with its heads and ``o_proj`` all-reduces.
"""

from __future__ import annotations

import torch

from deepseek_runtime.checkpoint.config import DeepseekConfig
from deepseek_runtime.checkpoint.weights import WeightStore
from deepseek_runtime.kernels.kv_cache import write_latent
from deepseek_runtime.kernels.linear import Weight, linear
from deepseek_runtime.kernels.paged_attention import PagedAttentionMetadata, paged_mla_attention
from deepseek_runtime.model.norm import RMSNorm
from deepseek_runtime.model.rope import RotaryEmbedding
from deepseek_runtime.parallel.attention import MLAParallelProjections
from deepseek_runtime.parallel.groups import ParallelContext
from deepseek_runtime.parallel.linear import RowParallelLinear

LORA_NORM_EPS = 1e-6  # q_a_layernorm / kv_a_layernorm use the default eps, not rms_norm_eps


def _maybe_bias(store: WeightStore, name: str, dim: int, enabled: bool) -> torch.Tensor | None:
    return store.get(f"{name}.bias", (dim,)) if enabled else None


class MLAAttention:
    """One layer's MLA weights and forward pass."""

    def __init__(
        self,
        config: DeepseekConfig,
        store: WeightStore,
        prefix: str,
        ctx: ParallelContext | None = None,
    ) -> None:
        c = config
        self.n_heads = c.num_attention_heads
        self.nope, self.rope_dim, self.v_dim = c.qk_nope_head_dim, c.qk_rope_head_dim, c.v_head_dim
        self.rank = c.kv_lora_rank
        self.scale = c.softmax_scale()
        self.o_parallel: RowParallelLinear | None = None
        if ctx is not None:
            self._load_parallel(c, store, prefix, ctx)
            return
        hidden, bias = c.hidden_size, c.attention_bias
        q_out = self.n_heads * c.qk_head_dim
        self.q_proj: Weight | None = None
        self.q_a_proj: Weight | None = None
        self.q_a_bias: torch.Tensor | None = None
        self.q_a_norm: RMSNorm | None = None
        self.q_b_proj: Weight | None = None
        if c.q_lora_rank is None:
            self.q_proj = store.get_linear(f"{prefix}.q_proj.weight", (q_out, hidden))
        else:
            self.q_a_proj = store.get_linear(f"{prefix}.q_a_proj.weight", (c.q_lora_rank, hidden))
            self.q_a_bias = _maybe_bias(store, f"{prefix}.q_a_proj", c.q_lora_rank, bias)
            self.q_a_norm = RMSNorm.load(
                store, f"{prefix}.q_a_layernorm", c.q_lora_rank, LORA_NORM_EPS
            )
            self.q_b_proj = store.get_linear(f"{prefix}.q_b_proj.weight", (q_out, c.q_lora_rank))
        self.kv_a_proj = store.get_linear(
            f"{prefix}.kv_a_proj_with_mqa.weight", (c.latent_dim, hidden)
        )
        self.kv_a_bias = _maybe_bias(store, f"{prefix}.kv_a_proj_with_mqa", c.latent_dim, bias)
        self.kv_a_norm = RMSNorm.load(store, f"{prefix}.kv_a_layernorm", self.rank, LORA_NORM_EPS)
        kv_b = store.get(
            f"{prefix}.kv_b_proj.weight", (self.n_heads * (self.nope + self.v_dim), self.rank)
        ).view(self.n_heads, self.nope + self.v_dim, self.rank)
        self.w_uk = kv_b[:, : self.nope, :].contiguous()  # [H, nope, R]
        self.w_uv = kv_b[:, self.nope :, :].contiguous()  # [H, v, R]
        self.o_proj = store.get_linear(
            f"{prefix}.o_proj.weight", (hidden, self.n_heads * self.v_dim)
        )
        self.o_bias = _maybe_bias(store, f"{prefix}.o_proj", hidden, bias)

    def _load_parallel(
        self, c: DeepseekConfig, store: WeightStore, prefix: str, ctx: ParallelContext
    ) -> None:
        """This TP rank's heads; the latent projections and norms are replicated."""
        proj = MLAParallelProjections(c, store, prefix, ctx)
        self.n_heads = proj.heads
        self.q_a_proj, self.q_a_bias = proj.q_a, proj.q_a_bias
        self.q_a_norm = None
        self.q_proj = self.q_b_proj = proj.query.weight
        if c.q_lora_rank is None:
            self.q_b_proj = None
        else:
            self.q_proj = None
            self.q_a_norm = RMSNorm.load(
                store, f"{prefix}.q_a_layernorm", c.q_lora_rank, LORA_NORM_EPS
            )
        self.kv_a_proj, self.kv_a_bias = proj.kv_a, proj.kv_a_bias
        self.kv_a_norm = RMSNorm.load(store, f"{prefix}.kv_a_layernorm", self.rank, LORA_NORM_EPS)
        kv_b = proj.kv_b_per_head()
        self.w_uk = kv_b[:, : self.nope, :].contiguous()
        self.w_uv = kv_b[:, self.nope :, :].contiguous()
        self.o_parallel = proj.o_proj

    def _query(self, x: torch.Tensor) -> torch.Tensor:
        if self.q_proj is not None:
            return linear(x, self.q_proj)
        assert self.q_a_proj is not None and self.q_a_norm is not None and self.q_b_proj is not None
        return linear(self.q_a_norm(linear(x, self.q_a_proj, self.q_a_bias)), self.q_b_proj)

    def __call__(
        self,
        x: torch.Tensor,
        rope: RotaryEmbedding,
        cos_sin: tuple[torch.Tensor, torch.Tensor],
        cache: torch.Tensor,
        meta: PagedAttentionMetadata,
    ) -> torch.Tensor:
        """``x`` ``[T, hidden]`` -> ``[T, hidden]``; writes the T new latents into ``cache``."""
        n_tokens = x.shape[0]
        q = self._query(x).view(n_tokens, self.n_heads, self.nope + self.rope_dim)
        q_nope, q_pe = q[..., : self.nope], q[..., self.nope :]
        kv = linear(x, self.kv_a_proj, self.kv_a_bias)
        c_kv = self.kv_a_norm(kv[:, : self.rank])
        cos, sin = cos_sin
        q_pe = rope.apply(q_pe, cos, sin)
        k_pe = rope.apply(kv[:, self.rank :], cos, sin)
        write_latent(cache, meta.slot_mapping, c_kv, k_pe)
        out = paged_mla_attention(
            q_nope, q_pe, cache, meta, scale=self.scale, w_uk=self.w_uk, w_uv=self.w_uv
        )
        if self.o_parallel is not None:
            return self.o_parallel(out.reshape(n_tokens, -1))
        return linear(out.reshape(n_tokens, -1), self.o_proj, self.o_bias)
