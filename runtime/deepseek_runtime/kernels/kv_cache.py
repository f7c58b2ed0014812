"""Writing a step's new tokens into one layer's paged cache (reference on CPU).

Called by the attention layers before attention reads the cache. The slot of each new
token is ``metadata.slot_mapping``; a row holds MLA's latent ``[c_kv | k_pe]`` or GQA's
``[k (kv_heads x d) | v (kv_heads x d)]`` (see ``model.registry``). A fused
reshape-and-cache kernel replaces these behind the same signatures.
"""

from __future__ import annotations

import torch


def write_latent(
    cache: torch.Tensor, slots: torch.Tensor, c_kv: torch.Tensor, k_pe: torch.Tensor
) -> None:
    """Store MLA latents ``c_kv`` ``[T, rank]`` and rotated ``k_pe`` ``[T, rope]``.

    ``index_copy_`` (one row copy per slot; slots of a step are distinct) rather than an
    advanced-index assignment, which goes through the general ``index_put_`` kernel.
    """
    cache.index_copy_(0, slots, torch.cat((c_kv, k_pe), dim=-1).to(cache.dtype))


def write_kv(cache: torch.Tensor, slots: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    """Store GQA keys and values ``[T, kv_heads, head_dim]`` side by side in each row."""
    cache[slots] = torch.cat((k.flatten(1), v.flatten(1)), dim=-1).to(cache.dtype)
