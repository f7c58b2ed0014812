"""Head-wise tensor parallelism for attention: GQA's fused q/k/v and MLA's projections.

Called by the model files' attention layers (not wired yet). Attention heads are
independent, so each rank runs its own heads end to end and only ``o_proj`` (row-parallel)
sums over ranks::

    GQA:  q heads [h0, h1)       k/v heads: 1/TP, or one replicated head when TP > KV heads
    MLA:  q_proj / q_b_proj rows of heads [h0, h1)   (each head: nope | rope)
          kv_b_proj rows of heads [h0, h1)           (each head: nope | v)
          q_a_proj, kv_a_proj (the shared latent): replicated on every rank
          o_proj columns of heads [h0, h1)           -> all-reduce

Which head counts a TP size may split is checked here with a ValueError naming the field.
"""

from __future__ import annotations

import torch

from deepseek_runtime.checkpoint.config import DeepseekConfig
from deepseek_runtime.kernels.linear import Weight, concat_rows, linear
from deepseek_runtime.parallel.config import kv_head_bounds, shard_bounds
from deepseek_runtime.parallel.groups import ParallelContext
from deepseek_runtime.parallel.linear import ColumnParallelLinear, RowParallelLinear
from deepseek_runtime.parallel.shard_loading import (
    ShardSource,
    load_linear_slice,
    load_slice,
    weight_nbytes,
)


def head_bounds(num_heads: int, ctx: ParallelContext) -> tuple[int, int]:
    """Query heads ``[h0, h1)`` of this TP rank (TP must divide the head count)."""
    return shard_bounds(num_heads, ctx.tp.size, ctx.tp.rank, "num_attention_heads")


def _replicated_bias(
    source: ShardSource, name: str, size: int, enabled: bool
) -> torch.Tensor | None:
    return load_slice(source, f"{name}.bias", (size,), 0, (0, size)) if enabled else None


class QKVParallelLinear:
    """``q_proj`` / ``k_proj`` / ``v_proj`` of this rank's heads fused into one GEMM.

    Args:
        prefix: the attention layer (reads ``{prefix}.{q,k,v}_proj.weight`` / ``.bias``).
        hidden: model width (the projections' input).
        head_dim: width of one head.
        num_heads / num_kv_heads: the full model's query and KV head counts.
        bias: the projections carry biases (Qwen2).
    """

    def __init__(
        self,
        source: ShardSource,
        prefix: str,
        ctx: ParallelContext,
        *,
        hidden: int,
        head_dim: int,
        num_heads: int,
        num_kv_heads: int,
        bias: bool = False,
    ) -> None:
        h0, h1 = head_bounds(num_heads, ctx)
        k0, k1 = kv_head_bounds(num_kv_heads, ctx.tp.size, ctx.tp.rank)
        self.heads, self.kv_heads, self.head_dim = h1 - h0, k1 - k0, head_dim
        q_rows, kv_rows = (h0 * head_dim, h1 * head_dim), (k0 * head_dim, k1 * head_dim)
        q_shape, kv_shape = (num_heads * head_dim, hidden), (num_kv_heads * head_dim, hidden)
        q = load_linear_slice(source, f"{prefix}.q_proj.weight", q_shape, 0, q_rows)
        k = load_linear_slice(source, f"{prefix}.k_proj.weight", kv_shape, 0, kv_rows)
        v = load_linear_slice(source, f"{prefix}.v_proj.weight", kv_shape, 0, kv_rows)
        self.weight: Weight = concat_rows(concat_rows(q, k), v)
        self.bias: torch.Tensor | None = None
        if bias:
            self.bias = torch.cat(
                (
                    load_slice(source, f"{prefix}.q_proj.bias", (q_shape[0],), 0, q_rows),
                    load_slice(source, f"{prefix}.k_proj.bias", (kv_shape[0],), 0, kv_rows),
                    load_slice(source, f"{prefix}.v_proj.bias", (kv_shape[0],), 0, kv_rows),
                )
            )

    @property
    def nbytes(self) -> int:
        return weight_nbytes(self.weight) + weight_nbytes(self.bias)

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(q [T, heads*d], k [T, kv_heads*d], v [T, kv_heads*d])`` of this rank's heads."""
        qkv = linear(x, self.weight, self.bias)
        q_width, kv_width = self.heads * self.head_dim, self.kv_heads * self.head_dim
        q, k, v = torch.split(qkv, [q_width, kv_width, kv_width], dim=-1)
        return q, k, v


class MLAParallelProjections:
    """One MLA layer's projections with this rank's heads; norms and attention stay outside.

    ``query`` is ``q_proj`` (V2) or ``q_b_proj`` (applied after the caller's
    ``q_a_layernorm`` of ``q_a_proj(x)``); ``kv_b`` gives ``[heads, nope + v, kv_lora_rank]``
    via :meth:`kv_b_per_head`; ``o_proj`` all-reduces.
    """

    def __init__(
        self, config: DeepseekConfig, source: ShardSource, prefix: str, ctx: ParallelContext
    ) -> None:
        c = config
        h0, h1 = head_bounds(c.num_attention_heads, ctx)
        self.heads = h1 - h0
        hidden, bias = c.hidden_size, c.attention_bias
        qk, kv_width = c.qk_head_dim, c.qk_nope_head_dim + c.v_head_dim
        self.q_a: Weight | None = None
        self.q_a_bias: torch.Tensor | None = None
        if c.q_lora_rank is None:
            q_name, q_in = f"{prefix}.q_proj", hidden
        else:
            q_name, q_in = f"{prefix}.q_b_proj", c.q_lora_rank
            self.q_a = load_linear_slice(
                source, f"{prefix}.q_a_proj.weight", (c.q_lora_rank, hidden), 0, (0, c.q_lora_rank)
            )
            self.q_a_bias = _replicated_bias(source, f"{prefix}.q_a_proj", c.q_lora_rank, bias)
        heads = c.num_attention_heads
        self.query = ColumnParallelLinear(
            source, q_name, q_in, heads * qk, ctx, bounds=(h0 * qk, h1 * qk)
        )
        self.kv_a = load_linear_slice(
            source,
            f"{prefix}.kv_a_proj_with_mqa.weight",
            (c.latent_dim, hidden),
            0,
            (0, c.latent_dim),
        )
        self.kv_a_bias = _replicated_bias(
            source, f"{prefix}.kv_a_proj_with_mqa", c.latent_dim, bias
        )
        self.kv_b = ColumnParallelLinear(
            source,
            f"{prefix}.kv_b_proj",
            c.kv_lora_rank,
            heads * kv_width,
            ctx,
            bounds=(h0 * kv_width, h1 * kv_width),
        )
        self.o_proj = RowParallelLinear(
            source,
            f"{prefix}.o_proj",
            heads * c.v_head_dim,
            hidden,
            ctx,
            bias=bias,
            bounds=(h0 * c.v_head_dim, h1 * c.v_head_dim),
        )
        self.kv_width, self.rank_dim = kv_width, c.kv_lora_rank

    @property
    def nbytes(self) -> int:
        """Resident bytes: the head-split projections plus the replicated latent ones."""
        replicated = sum(
            weight_nbytes(w) for w in (self.q_a, self.q_a_bias, self.kv_a, self.kv_a_bias)
        )
        return replicated + self.query.nbytes + self.kv_b.nbytes + self.o_proj.nbytes

    def kv_b_per_head(self) -> torch.Tensor:
        """``kv_b_proj`` of this rank's heads as dense ``[heads, nope + v, kv_lora_rank]``."""
        w = self.kv_b.weight
        dense = w if isinstance(w, torch.Tensor) else w.dequantize()
        return dense.view(self.heads, self.kv_width, self.rank_dim)
