"""Paged MLA decode attention from ``block_tables`` / ``seq_lens``: Triton on CUDA.

The entry point the model's decode step can call with GPU-shaped metadata. On CUDA it
folds ``W_uk`` into the query, runs the Triton kernel
:func:`deepseek_runtime.kernels.triton.mla_decode.mla_decode_latent` and applies ``W_uv``;
elsewhere it
builds the reference's decode metadata (a validity mask from ``seq_lens``) and calls
:func:`deepseek_runtime.kernels.paged_attention.paged_mla_attention`.
"""

from __future__ import annotations

import torch

from deepseek_runtime.kernels.dispatch import Backend, backend_for
from deepseek_runtime.kernels.paged_attention import PagedAttentionMetadata, paged_mla_attention


def paged_mla_decode(
    q_nope: torch.Tensor,
    q_pe: torch.Tensor,
    cache: torch.Tensor,
    block_tables: torch.Tensor,
    seq_lens: torch.Tensor,
    *,
    block_size: int,
    scale: float,
    w_uk: torch.Tensor,
    w_uv: torch.Tensor,
    backend: Backend | None = None,
) -> torch.Tensor:
    """Decode attention output ``[B, H, v_head_dim]`` for one query token per sequence.

    Args:
        q_nope, q_pe: ``[B, H, nope]`` and ``[B, H, rope]`` (rotated) queries.
        cache: ``[num_slots, kv_lora_rank + rope]`` latents, holding this step's tokens.
        block_tables: ``[B, max_blocks]`` block ids (padding entries are never read).
        seq_lens: ``[B]`` context length of each sequence, this step's token included.
        block_size, scale, w_uk, w_uv: as in :func:`paged_mla_attention`.
        backend: force ``"triton"`` or ``"torch"`` (tests run Triton's interpreter on CPU);
            by default the one for the cache's device.
    """
    if (backend or backend_for(cache.device.type)) == "triton":
        # Triton loads only where it runs (CUDA, or the interpreter in tests)
        from deepseek_runtime.kernels.triton.mla_decode import mla_decode_latent  # noqa: PLC0415

        q_lat = torch.einsum("bhn,hnr->bhr", q_nope, w_uk)
        q_full = torch.cat((q_lat, q_pe.to(q_lat.dtype)), dim=-1) * scale
        rank = w_uk.shape[2]
        latent = mla_decode_latent(
            q_full, cache, block_tables, seq_lens, rank=rank, block_size=block_size
        )
        return torch.einsum("bhr,hvr->bhv", latent.to(w_uv.dtype), w_uv)
    batch, max_blocks = block_tables.shape
    meta = PagedAttentionMetadata(
        slot_mapping=torch.zeros(batch, dtype=torch.long, device=cache.device),
        query_start_loc=torch.arange(batch + 1, device=cache.device),
        seq_lens=seq_lens.to(device=cache.device, dtype=torch.long),
        block_tables=block_tables.long(),
        block_size=block_size,
        decode_idx=torch.arange(batch, device=cache.device),
        decode_blocks=max_blocks,
        prefill_spans=(),
    )
    return paged_mla_attention(q_nope, q_pe, cache, meta, scale=scale, w_uk=w_uk, w_uv=w_uv)
