"""Pipeline parallelism: which layers each stage holds, and moving activations between them.

Called by the pipelined step (``backends.pp_schedule``): a stage runs its layer range on a
micro-batch, sends the hidden states to the next stage and receives the previous stage's;
the last stage sends the step's logits back to rank 0, which samples.
:func:`partition_layers` is pure; the send / receive pair is ``torch.distributed``
point-to-point (gloo on CPU, NCCL on CUDA), self-describing so the receiver needs to know
neither the token count nor the dtype in advance::

    header  int64[8] = [ndim, dtype code, *shape, 0 ...]    then    payload (contiguous)
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist

from deepseek_runtime.parallel.groups import ParallelContext

_HEADER = 8
_DTYPES = (torch.float32, torch.bfloat16, torch.float16, torch.int64, torch.int32, torch.bool)


def partition_layers(num_layers: int, stages: int) -> list[range]:
    """Split ``num_layers`` decoder layers into ``stages`` contiguous, balanced ranges.

    Stage sizes differ by at most one. The extra layers go to the middle stages first,
    then to the first, and the last stage gets one only when every stage does: the first
    stage also runs the embedding and the last the final norm, ``lm_head`` and sampling.

    Raises:
        ValueError: ``stages < 1`` or more stages than layers.
    """
    if stages < 1:
        raise ValueError(f"pipeline-parallel size must be >= 1, got {stages}")
    if stages > num_layers:
        raise ValueError(
            f"pipeline-parallel size {stages} is deeper than the model's {num_layers} layers;"
            f" use at most {num_layers} stages"
        )
    base, extra = divmod(num_layers, stages)
    preference = [*range(1, stages - 1), 0, stages - 1] if stages > 1 else [0]
    sizes = [base] * stages
    for stage in preference[:extra]:
        sizes[stage] += 1
    ranges, start = [], 0
    for size in sizes:
        ranges.append(range(start, start + size))
        start += size
    return ranges


def stage_layers(num_layers: int, ctx: ParallelContext) -> range:
    """The layer indices this rank's pipeline stage holds."""
    return partition_layers(num_layers, ctx.pp.size)[ctx.pp.rank]


class PendingSend:
    """An asynchronous send in flight: keeps its buffers alive until :meth:`wait`."""

    def __init__(self, works: list[Any], buffers: tuple[torch.Tensor, ...]) -> None:
        self._works, self._buffers = works, buffers

    def wait(self) -> None:
        for work in self._works:
            work.wait()
        self._works, self._buffers = [], ()


def send_tensor(tensor: torch.Tensor, dst: int, group: Any = None) -> PendingSend:
    """Start sending ``tensor`` (header, then payload) to global rank ``dst``; the caller
    may compute the next micro-batch and :meth:`~PendingSend.wait` later. ``group`` (one
    holding both ranks; default the world) sets the timeout a stuck peer runs into."""
    if tensor.dtype not in _DTYPES or tensor.dim() > _HEADER - 2:
        raise ValueError(f"cannot send a {tensor.dtype} tensor of {tensor.dim()} dimensions")
    header = torch.zeros(_HEADER, dtype=torch.int64)
    header[0], header[1] = tensor.dim(), _DTYPES.index(tensor.dtype)
    header[2 : 2 + tensor.dim()] = torch.tensor(tensor.shape, dtype=torch.int64)
    header, payload = header.to(tensor.device), tensor.contiguous()
    works = [dist.isend(header, dst=dst, group=group), dist.isend(payload, dst=dst, group=group)]
    return PendingSend([w for w in works if w is not None], (header, payload))


def recv_tensor(src: int, device: torch.device, group: Any = None) -> torch.Tensor:
    """Receive the tensor global rank ``src`` sent with :func:`send_tensor` (blocking)."""
    header = torch.zeros(_HEADER, dtype=torch.int64, device=device)
    dist.recv(header, src=src, group=group)
    ndim, code = int(header[0]), int(header[1])
    shape = [int(n) for n in header[2 : 2 + ndim]]
    out = torch.empty(shape, dtype=_DTYPES[code], device=device)
    dist.recv(out, src=src, group=group)
    return out


def send_activations(tensor: torch.Tensor, ctx: ParallelContext) -> None:
    """Send ``tensor`` to the next stage's rank holding the same TP shard (blocking)."""
    dst = ctx.next_stage_rank
    if dst is None:
        raise ValueError("the last pipeline stage has no next stage to send to")
    send_tensor(tensor, dst, ctx.pp.group).wait()


def recv_activations(ctx: ParallelContext) -> torch.Tensor:
    """Receive the tensor the previous stage sent with :func:`send_activations`."""
    src = ctx.prev_stage_rank
    if src is None:
        raise ValueError("the first pipeline stage has no previous stage to receive from")
    return recv_tensor(src, ctx.device, ctx.pp.group)
