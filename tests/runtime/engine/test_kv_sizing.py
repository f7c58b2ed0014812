"""Table tests of the KV sizing arithmetic and the host-memory readers (engine.kv_sizing)."""

from __future__ import annotations

from pathlib import Path

import pytest

from deepseek_runtime.engine.kv_sizing import (
    GpuMemoryProfile,
    KVCacheSizing,
    KVCacheTooSmallError,
    available_memory,
    blocks_for,
    bytes_per_block,
    cgroup_headroom,
    check_fits,
    check_fraction,
    cpu_kv_budget,
    gpu_kv_budget,
    mem_available,
    read_host_memory,
    scheduler_cap_blocks,
)

pytestmark = pytest.mark.unit

GIB = 1024**3
MEMINFO = "MemTotal:       24000000 kB\nMemFree:  100 kB\nMemAvailable:   20000000 kB\n"


@pytest.mark.parametrize(
    ("layers", "width", "item", "expected"),
    [
        (61, 512 + 64, 2, 61 * 16 * 576 * 2),
        (61, 512 + 64, 4, 61 * 16 * 576 * 4),
        (28, 2 * 2 * 128, 2, 28 * 16 * 512 * 2),
        (28, 2 * 1 * 128, 2, 28 * 16 * 256 * 2),
        (31, 576, 2, 31 * 16 * 576 * 2),
    ],
    ids=[
        "v3-mla-latent-rope-bf16",
        "v3-mla-fp32-cpu",
        "qwen-1.5b-gqa-2-kv-heads",
        "qwen-1.5b-tp2-1-kv-head-per-rank",
        "pipeline-stage-31-of-61-layers",
    ],
)
def test_bytes_per_block(layers: int, width: int, item: int, expected: int) -> None:
    assert bytes_per_block(layers, 16, width, item) == expected


@pytest.mark.parametrize(
    ("profile", "util", "expected"),
    [
        (GpuMemoryProfile(80 * GIB, 40 * GIB, 2 * GIB, GIB), 0.9, int(72 * GIB) - 43 * GIB),
        (GpuMemoryProfile(80 * GIB, 40 * GIB, 2 * GIB), 0.5, -2 * GIB),
        (GpuMemoryProfile(141 * GIB, 0, 0), 1.0, 141 * GIB),
    ],
    ids=["h100-half-full", "weights-exceed", "empty"],
)
def test_gpu_kv_budget(profile: GpuMemoryProfile, util: float, expected: int) -> None:
    assert gpu_kv_budget(profile, util) == expected


@pytest.mark.parametrize(
    ("budget", "per_block", "expected"),
    [(10 * 7680 + 5, 7680, 10), (7679, 7680, 0), (-5, 7680, 0), (0, 1, 0)],
)
def test_blocks_for(budget: int, per_block: int, expected: int) -> None:
    assert blocks_for(budget, per_block) == expected


@pytest.mark.parametrize(
    ("available", "fraction", "ranks", "expected"),
    [(10 * GIB, 0.5, 1, 5 * GIB), (10 * GIB, 0.5, 2, 5 * GIB // 2), (1000, 1.0, 4, 250)],
)
def test_cpu_kv_budget(available: int, fraction: float, ranks: int, expected: int) -> None:
    assert cpu_kv_budget(available, fraction, ranks) == expected


@pytest.mark.parametrize(
    ("seqs", "max_len", "block", "expected"), [(64, 2048, 16, 8192), (2, 17, 16, 4), (1, 1, 16, 1)]
)
def test_scheduler_cap(seqs: int, max_len: int, block: int, expected: int) -> None:
    assert scheduler_cap_blocks(seqs, max_len, block) == expected


def _sizing(blocks: int, per_block: int = 100) -> KVCacheSizing:
    return KVCacheSizing(blocks, 16, per_block, "kv_cache_memory_bytes", blocks * per_block)


def test_check_fits_passes_when_one_sequence_fits() -> None:
    check_fits(_sizing(4), 64, "--kv-cache-memory-bytes")
    check_fits(_sizing(4), 50, "--kv-cache-memory-bytes")


def test_check_fits_names_the_option_and_what_would_work() -> None:
    with pytest.raises(KVCacheTooSmallError) as err:
        check_fits(_sizing(3), 64, "--kv-cache-memory-bytes")
    msg = str(err.value)
    assert msg.startswith("--kv-cache-memory-bytes:")
    assert "--kv-cache-memory-bytes 400 or more" in msg  # 4 blocks x 100 bytes
    assert "--max-model-len 48 or less" in msg  # 3 blocks x 16 tokens


def test_check_fits_gpu_suggests_utilization() -> None:
    sizing = KVCacheSizing(0, 16, 100, "gpu_memory_utilization", -5)
    with pytest.raises(KVCacheTooSmallError, match="higher --gpu-memory-utilization") as err:
        check_fits(sizing, 32, "--gpu-memory-utilization")
    assert "or less" not in str(err.value)  # nothing fits: no length to offer


@pytest.mark.parametrize("value", [0.0, -0.1, 1.5])
def test_check_fraction_refuses(value: float) -> None:
    with pytest.raises(ValueError, match="--cpu-kv-cache-fraction"):
        check_fraction("--cpu-kv-cache-fraction", value)


def test_mem_available() -> None:
    assert mem_available(MEMINFO) == 20000000 * 1024
    with pytest.raises(ValueError, match="MemAvailable"):
        mem_available("MemTotal: 1 kB\n")


@pytest.mark.parametrize(
    ("limit", "usage", "expected"),
    [
        ("max\n", "123\n", None),  # cgroup v2, no limit
        ("9223372036854771712\n", "5\n", None),  # cgroup v1's "no limit"
        ("4294967296\n", "1073741824\n", 3 * GIB),
        ("1000\n", "2000\n", 0),  # over the limit already
        (None, "1", None),
        ("garbage", "1", None),
    ],
)
def test_cgroup_headroom(limit: str | None, usage: str | None, expected: int | None) -> None:
    assert cgroup_headroom(limit, usage) == expected


def test_available_memory_respects_the_pod_limit() -> None:
    host = 20000000 * 1024
    assert available_memory(MEMINFO, "max", "1") == host
    assert available_memory(MEMINFO, str(2 * GIB), str(GIB)) == GIB
    assert available_memory(MEMINFO, str(100 * GIB), "0") == host


def _root(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    return tmp_path


def test_read_host_memory_cgroup_v2(tmp_path: Path) -> None:
    root = _root(
        tmp_path,
        {
            "proc/meminfo": MEMINFO,
            "sys/fs/cgroup/memory.max": str(4 * GIB),
            "sys/fs/cgroup/memory.current": str(GIB),
        },
    )
    assert read_host_memory(root) == 3 * GIB


def test_read_host_memory_cgroup_v1(tmp_path: Path) -> None:
    root = _root(
        tmp_path,
        {
            "proc/meminfo": MEMINFO,
            "sys/fs/cgroup/memory/memory.limit_in_bytes": str(2 * GIB),
            "sys/fs/cgroup/memory/memory.usage_in_bytes": "0",
        },
    )
    assert read_host_memory(root) == 2 * GIB


def test_read_host_memory_without_cgroup(tmp_path: Path) -> None:
    assert read_host_memory(_root(tmp_path, {"proc/meminfo": MEMINFO})) == 20000000 * 1024
    with pytest.raises(ValueError, match="--kv-cache-memory-bytes"):
        read_host_memory(tmp_path / "nothing")


def test_read_host_memory_here_is_positive() -> None:
    assert read_host_memory() > 0
