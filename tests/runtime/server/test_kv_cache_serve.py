"""``serve`` sizes the native KV cache from memory, says so in its log and its metrics, and
exits 2 when the options leave it too small for one sequence (real server processes)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from server_harness import REPO, ServerProcess, metric_value

pytestmark = [pytest.mark.slow]


def _allocated(log: str) -> dict[str, object]:
    for line in log.splitlines():
        if '"kv cache allocated"' in line:
            entry: dict[str, object] = json.loads(line)
            return entry
    raise AssertionError(f"no 'kv cache allocated' log line:\n{log}")


def test_cpu_default_sizes_from_memory_logs_and_exports(tiny_model: Path, tmp_path: Path) -> None:
    proc = ServerProcess(tiny_model, args=["--device", "cpu", "--max-num-seqs", "4"])
    proc.start(tmp_path)
    try:
        text = proc.metrics()
        entry = _allocated(proc.log())
    finally:
        proc.stop()
    assert entry["source"] == "cpu_kv_cache_fraction"
    blocks = int(str(entry["num_blocks"]))
    # RAM is plentiful here, so the cap binds: 4 sequences x 2048 positions / 16 per block
    assert entry["cap_blocks"] == blocks == 4 * 2048 // 16
    assert entry["num_tokens"] == blocks * 16
    labels = f'num_gpu_blocks="{blocks}"'
    assert metric_value(text, "vllm:cache_config_info", labels) == 1.0
    assert 'cache_dtype="float32"' in text
    assert 'sizing="cpu_kv_cache_fraction"' in text
    assert metric_value(text, "dsr:kv_cache_blocks_total") == blocks
    assert metric_value(text, "dsr:kv_cache_tokens_total") == blocks * 16
    memory = int(str(entry["memory_bytes"]))
    assert metric_value(text, "dsr:kv_cache_memory_bytes") == memory
    assert memory == blocks * int(str(entry["bytes_per_block"]))


BYTES = "--kv-cache-memory-bytes"


def _serve_exit(tiny_model: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "deepseek_runtime.cli", "serve", "--model", str(tiny_model)]
    cmd += ["--port", "0", "--device", "cpu", *args]
    return subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=120, cwd=REPO)


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (
            ["--kv-cache-memory-bytes", "100000", "--max-model-len", "2048"],
            "--kv-cache-memory-bytes",
        ),
        (["--cpu-kv-cache-fraction", "0.0000001"], "--cpu-kv-cache-fraction"),
    ],
    ids=["bytes-below-one-sequence", "fraction-below-one-sequence"],
)
def test_too_small_exits_2_with_what_would_work(
    tiny_model: Path, args: list[str], named: str
) -> None:
    done = _serve_exit(tiny_model, *args)
    assert done.returncode == 2, done.stderr[-2000:]
    assert f"{named}: the KV cache gets" in done.stderr
    assert "--kv-cache-memory-bytes" in done.stderr and "or more" in done.stderr


@pytest.mark.parametrize("fraction", ["0", "-0.5", "1.5"])
def test_fraction_out_of_range_exits_2(tiny_model: Path, fraction: str) -> None:
    done = _serve_exit(tiny_model, "--cpu-kv-cache-fraction", fraction)
    assert done.returncode == 2
    assert "--cpu-kv-cache-fraction" in done.stderr


def test_unknown_kv_dtype_exits_2(tiny_model: Path) -> None:
    done = _serve_exit(tiny_model, "--kv-cache-dtype", "int3")
    assert done.returncode == 2
    assert "--kv-cache-dtype int3" in done.stderr


def test_tensor_parallel_ranks_agree_on_the_memory_sized_cache(
    tiny_model: Path, tmp_path: Path
) -> None:
    # no --num-blocks: rank 0 sizes the cache once every shard is loaded and the workers
    # allocate the agreed count (a worker holding fewer blocks would fail the step)
    args = ["--device", "cpu", "--dtype", "float32", "--max-num-seqs", "2"]
    proc = ServerProcess(tiny_model, args=[*args, "--tensor-parallel-size", "2"])
    proc.start(tmp_path)
    try:
        entry = _allocated(proc.log())
        reply = httpx.post(
            proc.url + "/v1/completions",
            timeout=120,
            json={"model": "tiny-v3", "prompt": "x " * 600, "max_tokens": 8, "ignore_eos": True},
        )
    finally:
        proc.stop()
    assert entry["source"] == "cpu_kv_cache_fraction"
    assert entry["num_blocks"] == 2 * 2048 // 16
    assert reply.status_code == 200, reply.text
    assert reply.json()["usage"]["completion_tokens"] == 8
