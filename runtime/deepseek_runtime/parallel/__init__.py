"""Tensor, expert and pipeline parallelism over ``torch.distributed``: the building blocks.

Process groups and the :class:`ParallelContext` every layer receives (``groups``), the
layout and its arithmetic (``config``), shard-wise checkpoint reads (``shard_loading``),
tensor-parallel layers (``linear``, ``mlp``, ``attention``, ``vocab``), routed experts over
ranks (``experts``) and pipeline stages (``pipeline``). The model files compose these;
``docs/runtime-parallel.md`` says what is wired so far.
"""

from deepseek_runtime.parallel.config import ParallelConfig
from deepseek_runtime.parallel.groups import GroupHandle, ParallelContext, init_process_groups

__all__ = ["GroupHandle", "ParallelConfig", "ParallelContext", "init_process_groups"]
