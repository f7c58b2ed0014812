"""How many KV cache blocks an engine gets: the arithmetic, and the host's free memory.

Pure integer arithmetic (no torch) so that every rule has a table test; the measuring
(a max-size dummy batch on CUDA, ``/proc/meminfo`` and the cgroup on CPU) is done by
``backends.kv_profile`` and ``read_host_memory`` below, and ``backends.native`` puts the
two together. The rules, in the order ``--num-blocks`` > ``--kv-cache-memory-bytes`` >
sized from memory:

* CUDA, as vLLM does::

      blocks = (device memory × gpu_memory_utilization
                − weights − peak activations − non-torch memory) // bytes per block

  where peak activations come from a dummy batch of ``max_num_batched_tokens`` tokens
  and non-torch memory is what the CUDA context, NCCL and the allocator's slack hold.
* CPU: ``cpu_kv_cache_fraction`` of the memory still available after the weights are
  loaded (``MemAvailable``, or the pod's cgroup limit minus its usage when that is
  smaller), shared by the tensor-parallel ranks of the host and capped at what the
  scheduler could ever fill (``max_num_seqs`` sequences of ``max_model_len`` tokens):
  a CPU cache beyond that only costs RAM and start-up time.

Any budget that cannot hold one sequence of ``max_model_len`` tokens is a
:class:`KVCacheTooSmallError` naming the option and the figure that would work.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

DEFAULT_GPU_MEMORY_UTILIZATION = 0.9
"""vLLM's default: the rest of the GPU is headroom for fragmentation and other tenants."""
DEFAULT_CPU_KV_CACHE_FRACTION = 0.5
"""Half of the RAM left after loading the weights: the other half is headroom for the
step's activations, the tokenizer, the HTTP server and the page cache."""

KVSource = Literal[
    "num_blocks", "kv_cache_memory_bytes", "gpu_memory_utilization", "cpu_kv_cache_fraction"
]


class KVCacheOptionError(ValueError):
    """A KV cache option the engine cannot honour (``serve`` exits 2 with the message)."""


class KVCacheTooSmallError(KVCacheOptionError):
    """The KV budget cannot serve the configuration; the message says what would."""


@dataclass(frozen=True, slots=True)
class GpuMemoryProfile:
    """One device's memory as measured before the KV cache is allocated, in bytes."""

    total: int
    """The device's memory (``torch.cuda.mem_get_info``'s total)."""
    weights: int
    """Bytes the loaded weights hold."""
    peak_activations: int
    """Peak allocation above the weights during the max-size dummy batch."""
    non_torch: int = 0
    """Device memory in use that torch's allocator does not account for."""


@dataclass(frozen=True, slots=True)
class KVCacheSizing:
    """The KV cache an engine got, and why (logged at start, exported as metrics)."""

    num_blocks: int
    block_size: int
    bytes_per_block: int
    """Across all layers, on this rank (MLA latent + rope, or this rank's K/V heads)."""
    source: KVSource
    """Which option decided the size."""
    budget_bytes: int
    """Bytes the rule allowed (``num_blocks × bytes_per_block`` for ``num_blocks``)."""
    dtype: str = "auto"
    """The cache's element type (the model dtype: the native engine caches in it)."""
    cap_blocks: int | None = None
    """The scheduler-reachable cap, when it (not the budget) set ``num_blocks``."""

    @property
    def num_tokens(self) -> int:
        return self.num_blocks * self.block_size

    @property
    def memory_bytes(self) -> int:
        return self.num_blocks * self.bytes_per_block

    def log_fields(self) -> dict[str, object]:
        """Structured-log extras: the fields plus tokens and bytes."""
        return asdict(self) | {"num_tokens": self.num_tokens, "memory_bytes": self.memory_bytes}


def bytes_per_block(layers: int, block_size: int, token_width: int, itemsize: int) -> int:
    """Cache bytes of one block: ``layers × block_size × values per token × itemsize``.

    ``token_width`` is MLA's ``kv_lora_rank + qk_rope_head_dim`` (one latent every rank
    keeps whole) or GQA's ``2 × kv heads on this rank × head_dim``.
    """
    return layers * block_size * token_width * itemsize


def gpu_kv_budget(profile: GpuMemoryProfile, utilization: float) -> int:
    """Bytes left for the KV cache on one device (negative: nothing fits)."""
    usable = int(profile.total * utilization)
    return usable - profile.weights - profile.peak_activations - profile.non_torch


def cpu_kv_budget(available: int, fraction: float, ranks_on_host: int = 1) -> int:
    """One rank's share of ``fraction`` of the host memory still available."""
    return int(available * fraction) // max(1, ranks_on_host)


def blocks_for(budget: int, per_block: int) -> int:
    """Whole blocks in ``budget`` (0 when the budget is negative)."""
    return max(0, budget) // per_block


def scheduler_cap_blocks(max_num_seqs: int, max_model_len: int, block_size: int) -> int:
    """Blocks the scheduler can fill at most: every running sequence at full length."""
    return max_num_seqs * -(-max_model_len // block_size)


def check_fits(sizing: KVCacheSizing, max_model_len: int, option: str) -> None:
    """:class:`KVCacheTooSmallError` unless one sequence of ``max_model_len`` tokens fits.

    ``option`` is the flag that decided the budget (``--gpu-memory-utilization``, ...):
    the message names it, the bytes one such sequence needs, and the longest
    ``--max-model-len`` the budget does hold.
    """
    need_blocks = -(-max_model_len // sizing.block_size)
    if sizing.num_blocks >= need_blocks:
        return
    need = need_blocks * sizing.bytes_per_block
    fits = sizing.num_tokens
    raise KVCacheTooSmallError(
        f"{option}: the KV cache gets {sizing.num_blocks} block(s) "
        f"({max(0, sizing.budget_bytes)} bytes, {fits} tokens), less than one sequence of "
        f"--max-model-len {max_model_len} ({need_blocks} blocks of {sizing.bytes_per_block} "
        f"bytes = {need} bytes); give --kv-cache-memory-bytes {need} or more"
        + (f", or --max-model-len {fits} or less" if fits >= 2 else "")
        + (", or a higher --gpu-memory-utilization" if option == "--gpu-memory-utilization" else "")
    )


def check_fraction(option: str, value: float) -> None:
    """A memory fraction must be in (0, 1]; anything else exits 2 naming ``option``."""
    if not 0 < value <= 1:
        raise ValueError(f"{option} {value:g}: must be a fraction in (0, 1], e.g. 0.5")


# -- host memory ----------------------------------------------------------------------

_CGROUP_V2 = ("memory.max", "memory.current")
_CGROUP_V1 = ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes")


def mem_available(meminfo: str) -> int:
    """``MemAvailable`` of a ``/proc/meminfo`` text, in bytes (ValueError if absent)."""
    for line in meminfo.splitlines():
        key, _, rest = line.partition(":")
        if key == "MemAvailable":
            return int(rest.split()[0]) * 1024
    raise ValueError("/proc/meminfo has no MemAvailable line")


def cgroup_headroom(limit: str | None, usage: str | None) -> int | None:
    """``limit − usage`` of a cgroup's memory files; None when unlimited or unreadable.

    cgroup v2 writes ``max`` for no limit; v1 writes a huge number (about 2**63), which
    is no limit either.
    """
    if limit is None or usage is None:
        return None
    limit, usage = limit.strip(), usage.strip()
    if limit == "max" or not limit.isdigit() or not usage.isdigit():
        return None
    if int(limit) >= 1 << 60:
        return None
    return max(0, int(limit) - int(usage))


def available_memory(meminfo: str, limit: str | None, usage: str | None) -> int:
    """The smaller of the host's ``MemAvailable`` and the cgroup's headroom."""
    host = mem_available(meminfo)
    pod = cgroup_headroom(limit, usage)
    return host if pod is None else min(host, pod)


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def read_host_memory(root: Path = Path("/")) -> int:
    """Bytes this process may still allocate: host ``MemAvailable``, bounded by the
    memory cgroup's limit (v2, else v1) so a pod's limit is respected."""
    meminfo = _read(root / "proc/meminfo")
    if meminfo is None:
        raise ValueError("cannot read /proc/meminfo; give --kv-cache-memory-bytes")
    cgroup = root / "sys/fs/cgroup"
    for limit_name, usage_name in (_CGROUP_V2, _CGROUP_V1):
        limit = _read(cgroup / limit_name)
        if limit is not None:
            return available_memory(meminfo, limit, _read(cgroup / usage_name))
    return mem_available(meminfo)
