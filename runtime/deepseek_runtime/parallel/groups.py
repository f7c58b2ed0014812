"""Process groups over ``torch.distributed`` and the context the parallel layers receive.

Called once per process by whoever starts a rank (later: ``serve``'s worker supervisor),
then passed explicitly to every parallel layer: there is no module-level state, so two
contexts (say TP=4, and TP=2 x PP=2 over the same four processes) can coexist in a test.

* :func:`init_distributed` joins the world: gloo on CPU, NCCL on CUDA, over TCP at
  ``master_addr:master_port``, with a timeout so a missing peer is an error, not a hang.
* :func:`build_context` cuts the world into TP and PP groups per
  :class:`~deepseek_runtime.parallel.config.ParallelConfig` (every rank must call it:
  creating a group is collective). EP reuses the TP group when expert parallelism is on.
* :func:`init_process_groups` does both.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from deepseek_runtime.parallel.config import ParallelConfig

DEFAULT_TIMEOUT = timedelta(seconds=60)


@dataclass(frozen=True, slots=True)
class GroupHandle:
    """One process group as this rank sees it; collectives are no-ops for a group of one.

    Attributes:
        ranks: global ranks of the members, in group order.
        rank: this process's index within ``ranks``.
        group: the ``torch.distributed`` group (None for a group of one).
    """

    ranks: tuple[int, ...]
    rank: int
    group: Any = None

    @property
    def size(self) -> int:
        return len(self.ranks)

    @staticmethod
    def single(rank: int = 0) -> GroupHandle:
        """A group holding only this process (no collectives run)."""
        return GroupHandle((rank,), 0, None)

    def all_reduce(self, tensor: torch.Tensor) -> torch.Tensor:
        """Elementwise sum over the group (a new tensor; ``tensor`` is not modified)."""
        if self.size == 1:
            return tensor
        out = tensor.contiguous().clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM, group=self.group)
        return out

    def all_gather(self, tensor: torch.Tensor, dim: int = -1) -> torch.Tensor:
        """Concatenate every member's equally shaped ``tensor`` along ``dim``, in rank order."""
        if self.size == 1:
            return tensor
        local = tensor.contiguous()
        parts = [torch.empty_like(local) for _ in range(self.size)]
        dist.all_gather(parts, local, group=self.group)
        return torch.cat(parts, dim=dim)


@dataclass(frozen=True, slots=True)
class ParallelContext:
    """Where this rank sits: its groups and degrees, handed to every parallel layer.

    Attributes:
        config: the layout this context was built from.
        tp: the tensor-parallel group (the ranks of this pipeline stage).
        pp: the pipeline group (this TP shard's rank in every stage, first stage first).
        ep: the expert-parallel group (the TP group with EP on, else this rank alone).
        device: where this rank's weights and activations live.
    """

    config: ParallelConfig
    tp: GroupHandle
    pp: GroupHandle
    ep: GroupHandle
    device: torch.device

    @staticmethod
    def single(device: torch.device | str = "cpu") -> ParallelContext:
        """The context of one process serving alone (every collective is a no-op)."""
        alone = GroupHandle.single()
        return ParallelContext(ParallelConfig(), alone, alone, alone, torch.device(device))

    @property
    def rank(self) -> int:
        return self.config.rank

    @property
    def is_first_stage(self) -> bool:
        return self.pp.rank == 0

    @property
    def is_last_stage(self) -> bool:
        return self.pp.rank == self.pp.size - 1

    @property
    def next_stage_rank(self) -> int | None:
        """Global rank this rank sends activations to (None on the last stage)."""
        return None if self.is_last_stage else self.pp.ranks[self.pp.rank + 1]

    @property
    def prev_stage_rank(self) -> int | None:
        """Global rank this rank receives activations from (None on the first stage)."""
        return None if self.is_first_stage else self.pp.ranks[self.pp.rank - 1]


def default_backend(device: torch.device) -> str:
    """``"nccl"`` for CUDA devices, ``"gloo"`` otherwise."""
    return "nccl" if device.type == "cuda" else "gloo"


def init_distributed(
    config: ParallelConfig,
    master_addr: str,
    master_port: int,
    device: torch.device | str = "cpu",
    timeout: timedelta = DEFAULT_TIMEOUT,
) -> None:
    """Join the world of ``config.world_size`` processes (no-op when already joined).

    Raises:
        ValueError: an existing world does not match ``config``.
        RuntimeError / DistStoreError: a peer did not join within ``timeout``.
    """
    if dist.is_initialized():
        if (dist.get_world_size(), dist.get_rank()) != (config.world_size, config.rank):
            raise ValueError(
                f"torch.distributed is already initialized as rank {dist.get_rank()} of "
                f"{dist.get_world_size()}, not rank {config.rank} of {config.world_size}"
            )
        return
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    dist.init_process_group(
        backend=default_backend(dev),
        init_method=f"tcp://{master_addr}:{master_port}",
        rank=config.rank,
        world_size=config.world_size,
        timeout=timeout,
    )


def _member_group(all_ranks: list[tuple[int, ...]], rank: int, timeout: timedelta) -> GroupHandle:
    """Create every group in ``all_ranks`` (collective) and return the one holding ``rank``."""
    mine: GroupHandle | None = None
    for ranks in all_ranks:
        group = dist.new_group(list(ranks), timeout=timeout) if len(ranks) > 1 else None
        if rank in ranks:
            mine = GroupHandle(ranks, ranks.index(rank), group)
    if mine is None:
        raise ValueError(f"rank {rank} is in none of the groups {all_ranks}")
    return mine


def build_context(
    config: ParallelConfig,
    device: torch.device | str = "cpu",
    timeout: timedelta = DEFAULT_TIMEOUT,
) -> ParallelContext:
    """Cut the joined world into this layout's groups; every rank must call it, in order."""
    if config.world_size == 1:
        return ParallelContext(config, *(GroupHandle.single(),) * 3, torch.device(device))
    if not dist.is_initialized() or dist.get_world_size() != config.world_size:
        raise ValueError(f"build_context needs a joined world of {config.world_size} processes")
    tp_sets = [config.tp_group_ranks(stage) for stage in range(config.pipeline)]
    pp_sets = [config.pp_group_ranks(shard) for shard in range(config.tensor)]
    tp = _member_group(tp_sets, config.rank, timeout)
    pp = _member_group(pp_sets, config.rank, timeout)
    ep = tp if config.expert else GroupHandle.single(config.rank)
    return ParallelContext(config, tp, pp, ep, torch.device(device))


def init_process_groups(
    config: ParallelConfig,
    master_addr: str = "127.0.0.1",
    master_port: int = 29500,
    device: torch.device | str = "cpu",
    timeout: timedelta = DEFAULT_TIMEOUT,
) -> ParallelContext:
    """:func:`init_distributed` then :func:`build_context`: this rank's ready context."""
    if config.world_size > 1:
        init_distributed(config, master_addr, master_port, device, timeout)
    return build_context(config, device, timeout)


def destroy_process_groups() -> None:
    """Leave the world (idempotent), so a worker can exit without leaking sockets."""
    if dist.is_initialized():
        dist.destroy_process_group()
