"""The parallel layout of one serving group, and the arithmetic of splitting by it.

Pure (no torch): read by :func:`~deepseek_runtime.parallel.groups.init_process_groups`
and by the layers and the model files that must check their dimensions against the
layout. Ranks are numbered tensor-parallel first, as vLLM does::

    world rank = pp_rank * tensor + tp_rank        (tensor=2, pipeline=2)
    stage 0: ranks 0 1      TP group (0, 1)   PP groups (0, 2) and (1, 3)
    stage 1: ranks 2 3      TP group (2, 3)

so a TP group is contiguous (on one node, over NVLink) and pipeline stages may span
nodes. With expert parallelism on, the EP group is the TP group: the routed experts are
spread over the ranks that already share each layer's tensors.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ParallelConfig:
    """Parallel degrees and this process's place in the world.

    Attributes:
        tensor: tensor-parallel degree (ranks that split each layer's weights); >= 1.
        pipeline: pipeline-parallel degree (stages, each a range of layers); >= 1.
        expert: spread the routed experts over the TP group instead of splitting each.
        rank: this process's global rank, ``0 <= rank < world_size``.
        world_size: the number of processes; must equal ``tensor * pipeline``.
    """

    tensor: int = 1
    pipeline: int = 1
    expert: bool = False
    rank: int = 0
    world_size: int = 1

    def __post_init__(self) -> None:
        if self.tensor < 1:
            raise ValueError(f"tensor-parallel size must be >= 1, got {self.tensor}")
        if self.pipeline < 1:
            raise ValueError(f"pipeline-parallel size must be >= 1, got {self.pipeline}")
        if self.world_size != self.tensor * self.pipeline:
            raise ValueError(
                f"world size {self.world_size} must equal tensor-parallel size {self.tensor}"
                f" x pipeline-parallel size {self.pipeline} = {self.tensor * self.pipeline}"
            )
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} is outside the world of {self.world_size}")

    @property
    def tp_rank(self) -> int:
        return self.rank % self.tensor

    @property
    def pp_rank(self) -> int:
        return self.rank // self.tensor

    @property
    def expert_size(self) -> int:
        """Ranks the routed experts are spread over (1 when expert parallelism is off)."""
        return self.tensor if self.expert else 1

    def tp_group_ranks(self, stage: int) -> tuple[int, ...]:
        """Global ranks of pipeline stage ``stage``'s tensor-parallel group."""
        return tuple(range(stage * self.tensor, (stage + 1) * self.tensor))

    def pp_group_ranks(self, tp_rank: int) -> tuple[int, ...]:
        """Global ranks holding TP shard ``tp_rank`` in each stage, first stage first."""
        return tuple(stage * self.tensor + tp_rank for stage in range(self.pipeline))


def shard_bounds(size: int, parts: int, index: int, what: str = "dimension") -> tuple[int, int]:
    """``[start, stop)`` of part ``index`` when ``size`` splits into ``parts`` equal parts.

    Raises:
        ValueError: ``parts`` does not divide ``size`` (``what`` names the dimension).
    """
    if parts < 1 or not 0 <= index < parts:
        raise ValueError(f"{what}: part {index} of {parts} does not exist")
    if size % parts:
        raise ValueError(f"{what} ({size}) is not divisible by the parallel size {parts}")
    per = size // parts
    return index * per, (index + 1) * per


def check_divisible(size: int, parts: int, what: str) -> int:
    """``size // parts``, or a ValueError naming ``what`` when it does not divide."""
    if size % parts:
        raise ValueError(f"{what} ({size}) is not divisible by the tensor-parallel size {parts}")
    return size // parts


def kv_head_bounds(num_kv_heads: int, tensor: int, tp_rank: int) -> tuple[int, int]:
    """KV heads ``[start, stop)`` held by ``tp_rank`` for grouped-query attention.

    With at least as many KV heads as ranks, each rank holds ``num_kv_heads / tensor``;
    with fewer, each KV head is replicated on ``tensor / num_kv_heads`` consecutive ranks
    (the ranks whose query heads read it), so every rank holds exactly one.

    Raises:
        ValueError: neither count divides the other.
    """
    if num_kv_heads >= tensor:
        return shard_bounds(num_kv_heads, tensor, tp_rank, "num_key_value_heads")
    if tensor % num_kv_heads:
        raise ValueError(
            f"tensor-parallel size {tensor} must divide, or be a multiple of,"
            f" num_key_value_heads ({num_kv_heads})"
        )
    head = tp_rank // (tensor // num_kv_heads)
    return head, head + 1
