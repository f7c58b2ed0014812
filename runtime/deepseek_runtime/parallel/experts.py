"""Routed experts over several ranks: expert-parallel (whole experts per rank) or
tensor-parallel (a slice of every expert).

Called by the model's MoE block (not wired yet) with the router's choice, which every
rank computes identically from the same activations.

**Expert parallel: all-gather, local experts, all-reduce.** Rank ``r`` of the EP group
(the TP group, as in vLLM) owns experts ``[r E / P, (r + 1) E / P)``::

    tokens: replicated across the group (attention's o_proj all-reduce already did it),
            or gathered: all-gather each rank's tokens (padded to the largest count)
    dispatch: keep the (token, choice) pairs routed to local experts
    compute: kernels.moe (one grouped GEMM per local expert) on those rows only
    combine: scatter-add by token, all-reduce over the group (then keep own rows)

We chose this over all-to-all because, with attention tensor-parallel, every rank
already holds every token, so dispatch costs nothing and the combine is the all-reduce
the shared experts' row-parallel ``down_proj`` needs anyway (one collective for both).
Messages have fixed shapes and the sum order is fixed, so runs are deterministic. An
all-to-all moves only the routed rows (``k / E`` of them per rank) and wins on GPUs
with data-parallel attention and large batches; it can replace :meth:`dispatch_local`
and the combine without changing the layer's interface.

**Tensor parallel (EP off):** every rank holds ``moe_intermediate / TP`` of each
expert's ``gate``/``up`` rows and ``down`` columns, runs all tokens through them and the
group all-reduces.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist

from deepseek_runtime.kernels.linear import Weight, concat_rows
from deepseek_runtime.kernels.moe import moe_forward
from deepseek_runtime.parallel.config import shard_bounds
from deepseek_runtime.parallel.groups import GroupHandle, ParallelContext
from deepseek_runtime.parallel.shard_loading import ShardSource, load_linear_slice, weight_nbytes


def _load_expert(
    source: ShardSource,
    prefix: str,
    hidden: int,
    inter: int,
    bounds: tuple[int, int],
) -> tuple[Weight, Weight]:
    """``(gate_up rows, down columns)`` of one expert's intermediate slice ``bounds``."""
    gate = load_linear_slice(source, f"{prefix}.gate_proj.weight", (inter, hidden), 0, bounds)
    up = load_linear_slice(source, f"{prefix}.up_proj.weight", (inter, hidden), 0, bounds)
    down = load_linear_slice(source, f"{prefix}.down_proj.weight", (hidden, inter), 1, bounds)
    return concat_rows(gate, up), down


class _Experts:
    """Per-expert ``gate_up`` / ``down`` weights of experts ``experts``, rows ``bounds``."""

    def __init__(
        self,
        source: ShardSource,
        prefix: str,
        experts: range,
        shape: tuple[int, int],
        bounds: tuple[int, int],
    ) -> None:
        hidden, inter = shape
        loaded = [_load_expert(source, f"{prefix}.{e}", hidden, inter, bounds) for e in experts]
        self.w_gate_up: Sequence[Weight] = [gate_up for gate_up, _ in loaded]
        self.w_down: Sequence[Weight] = [down for _, down in loaded]

    @property
    def nbytes(self) -> int:
        return sum(weight_nbytes(w) for w in (*self.w_gate_up, *self.w_down))


class ExpertParallelExperts(_Experts):
    """This EP rank's whole routed experts; tokens go to the owners, results are summed.

    Args:
        prefix: the experts' prefix (``model.layers.{i}.mlp.experts``; expert ``e`` is
            ``{prefix}.{e}.{gate,up,down}_proj.weight``).
        num_experts / hidden / inter: routed experts, model width, ``moe_intermediate_size``.
    """

    def __init__(
        self,
        source: ShardSource,
        prefix: str,
        ctx: ParallelContext,
        *,
        num_experts: int,
        hidden: int,
        inter: int,
    ) -> None:
        self.ep: GroupHandle = ctx.ep
        self.start, self.stop = shard_bounds(
            num_experts, ctx.ep.size, ctx.ep.rank, "n_routed_experts"
        )
        experts = range(self.start, self.stop)
        super().__init__(source, prefix, experts, (hidden, inter), (0, inter))

    def dispatch_local(
        self, x: torch.Tensor, topk_ids: torch.Tensor, topk_weights: torch.Tensor
    ) -> torch.Tensor:
        """This rank's experts' weighted outputs for all rows of ``x`` (zeros elsewhere)."""
        out = torch.zeros_like(x)
        flat = topk_ids.reshape(-1)
        mine = ((flat >= self.start) & (flat < self.stop)).nonzero().squeeze(-1)
        if mine.numel() == 0:
            return out
        tokens = mine // topk_ids.shape[1]
        local_ids = (flat[mine] - self.start).unsqueeze(-1)
        weights = topk_weights.reshape(-1)[mine].unsqueeze(-1)
        y = moe_forward(x.index_select(0, tokens), local_ids, weights, self.w_gate_up, self.w_down)
        return out.index_add_(0, tokens, y.to(out.dtype))

    def __call__(
        self,
        x: torch.Tensor,
        topk_ids: torch.Tensor,
        topk_weights: torch.Tensor,
        *,
        tokens_replicated: bool = True,
        reduce_output: bool = True,
    ) -> torch.Tensor:
        """Routed-expert output for this rank's tokens ``x`` ``[N, hidden]``.

        Args:
            topk_ids / topk_weights: ``[N, K]`` routing of those tokens.
            tokens_replicated: every EP rank holds the same tokens (TP attention);
                otherwise each rank's tokens are all-gathered first.
            reduce_output: all-reduce (off: a partial sum for the caller to reduce along
                with the shared experts; only with ``tokens_replicated``).
        """
        if tokens_replicated or self.ep.size == 1:
            partial = self.dispatch_local(x, topk_ids, topk_weights)
            return self.ep.all_reduce(partial) if reduce_output else partial
        if not reduce_output:
            raise ValueError("reduce_output=False needs tokens_replicated=True")
        counts = self._gather_counts(x.shape[0], x.device)
        rows = max(counts)
        if rows == 0:
            return torch.zeros_like(x)
        gathered = [
            torch.split(self.ep.all_gather(_pad_rows(t, rows), dim=0), rows)
            for t in (x, topk_ids, topk_weights)
        ]
        xs, ids, ws = (
            torch.cat([part[:n] for part, n in zip(parts, counts, strict=True)])
            for parts in gathered
        )
        total = self.ep.all_reduce(self.dispatch_local(xs, ids, ws))
        begin = sum(counts[: self.ep.rank])
        return total[begin : begin + x.shape[0]]

    def _gather_counts(self, n: int, device: torch.device) -> list[int]:
        local = torch.tensor([n], dtype=torch.int64, device=device)
        parts = [torch.empty_like(local) for _ in range(self.ep.size)]
        dist.all_gather(parts, local, group=self.ep.group)
        return [int(p.item()) for p in parts]


def _pad_rows(t: torch.Tensor, rows: int) -> torch.Tensor:
    if t.shape[0] == rows:
        return t
    pad = t.new_zeros((rows - t.shape[0], *t.shape[1:]))
    return torch.cat((t, pad))


class TensorParallelExperts(_Experts):
    """Every routed expert, this TP rank holding ``inter / TP`` of each (EP off)."""

    def __init__(
        self,
        source: ShardSource,
        prefix: str,
        ctx: ParallelContext,
        *,
        num_experts: int,
        hidden: int,
        inter: int,
    ) -> None:
        self.tp = ctx.tp
        bounds = shard_bounds(inter, ctx.tp.size, ctx.tp.rank, "moe_intermediate_size")
        super().__init__(source, prefix, range(num_experts), (hidden, inter), bounds)

    def __call__(
        self,
        x: torch.Tensor,
        topk_ids: torch.Tensor,
        topk_weights: torch.Tensor,
        *,
        reduce_output: bool = True,
    ) -> torch.Tensor:
        partial = moe_forward(x, topk_ids, topk_weights, self.w_gate_up, self.w_down)
        return self.tp.all_reduce(partial) if reduce_output else partial
