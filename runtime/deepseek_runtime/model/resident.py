"""Resident weight bytes of a loaded model, counted from what it really holds.

Called by :class:`~deepseek_runtime.model.runner.ModelRunner` (``resident_weight_bytes``)
to measure what a tensor-parallel rank keeps: it walks the model's attributes and sums
the storage of every distinct tensor it reaches once, so a shard that secretly kept the
full tensor alive (a view of it) counts in full, and a tensor shared by two layers (tied
embeddings) counts once.
"""

from __future__ import annotations

from typing import Any

import torch


def _children(obj: Any) -> list[Any]:
    if isinstance(obj, list | tuple):
        return list(obj)
    if isinstance(obj, dict):
        return list(obj.values())
    slots = [getattr(obj, s) for s in getattr(type(obj), "__slots__", ()) if hasattr(obj, s)]
    return [*vars(obj).values(), *slots] if hasattr(obj, "__dict__") else slots


def resident_bytes(model: object, *, skip: tuple[object, ...] = ()) -> int:
    """Bytes of the distinct tensor storages reachable from ``model`` (``skip`` excluded)."""
    seen_objects: set[int] = {id(s) for s in skip}
    seen_storages: set[int] = set()
    total = 0
    stack: list[Any] = [model]
    while stack:
        obj = stack.pop()
        if id(obj) in seen_objects or isinstance(obj, str | int | float | bool | type(None)):
            continue
        seen_objects.add(id(obj))
        if isinstance(obj, torch.Tensor):
            storage = obj.untyped_storage()
            if storage.data_ptr() not in seen_storages:
                seen_storages.add(storage.data_ptr())
                total += int(storage.nbytes())
            continue
        if isinstance(obj, torch.device | torch.dtype):
            continue
        stack.extend(_children(obj))
    return total
