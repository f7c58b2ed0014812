"""Helpers shared by the rank-side checks: errors, byte counts, the naive references."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import torch

from deepseek_runtime.checkpoint.config import DeepseekConfig
from deepseek_runtime.checkpoint.model_config import load_model_config
from deepseek_runtime.checkpoint.weights import WeightStore
from deepseek_runtime.parallel.config import ParallelConfig
from deepseek_runtime.parallel.groups import ParallelContext, build_context


def max_err(got: torch.Tensor, want: torch.Tensor) -> float:
    """Largest absolute difference (infinite when the shapes differ)."""
    if got.shape != want.shape:
        return float("inf")
    if got.numel() == 0:
        return 0.0
    return float((got.float() - want.float()).abs().max())


def context(rank: int, world: int, tensor: int, expert: bool = True) -> ParallelContext:
    pipeline = world // tensor
    config = ParallelConfig(
        tensor=tensor, pipeline=pipeline, expert=expert, rank=rank, world_size=world
    )
    return build_context(config, timeout=timedelta(seconds=30))


def deepseek(path: str, keep_fp8: bool = False) -> tuple[DeepseekConfig, WeightStore]:
    cfg = load_model_config(path)
    assert isinstance(cfg, DeepseekConfig)
    return cfg, WeightStore(path, fp8_block=cfg.fp8_block, keep_fp8=keep_fp8)


def full_bytes(store: WeightStore, names: list[str]) -> int:
    """What the single-process model keeps of ``names``: FP8 + scales when kept, else dense."""
    total = 0
    for name in names:
        raw = store.raw(name)
        if raw.dtype == torch.float8_e4m3fn and store.keep_fp8:
            total += tensor_bytes(raw, store.raw(f"{name}_scale_inv").float())
        else:
            total += raw.numel() * store.dtype.itemsize
    return total


def tensor_bytes(*tensors: torch.Tensor | None) -> int:
    return sum(t.numel() * t.element_size() for t in tensors if t is not None)


def naive_mla(
    cfg: DeepseekConfig,
    q: torch.Tensor,
    c_kv: torch.Tensor,
    k_pe: torch.Tensor,
    kv_b: torch.Tensor,
) -> torch.Tensor:
    """Causal MLA over one sequence, for whichever heads ``q`` / ``kv_b`` hold (no rope).

    ``q`` ``[T, H * (nope + rope)]``, ``c_kv`` ``[T, R]`` (normed), ``k_pe`` ``[T, rope]``,
    ``kv_b`` ``[H, nope + v, R]``; returns ``[T, H * v]`` before ``o_proj``.
    """
    nope, heads, t = cfg.qk_nope_head_dim, kv_b.shape[0], q.shape[0]
    q = q.view(t, heads, -1)
    k_nope = torch.einsum("sr,hnr->shn", c_kv, kv_b[:, :nope])
    v = torch.einsum("sr,hvr->shv", c_kv, kv_b[:, nope:])
    scores = torch.einsum("thn,shn->hts", q[..., :nope], k_nope)
    scores = scores + torch.einsum("thd,sd->hts", q[..., nope:], k_pe)
    mask = torch.ones(t, t, dtype=torch.bool).triu(1)
    probs = (scores * cfg.softmax_scale()).masked_fill(mask, float("-inf")).softmax(-1)
    return torch.einsum("hts,shv->thv", probs, v).reshape(t, -1)


def report(err: float, **extra: Any) -> dict[str, Any]:
    return {"err": err, **extra}
