"""The KV sizing options reach the native engine from flags and from the ``DSR_*``
environment the operator renders (``DSR_GPU_MEMORY_UTILIZATION`` from
``spec.engine.gpuMemoryUtilization``)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from deepseek_runtime.backends.options import NativeEngineOptions
from deepseek_runtime.engine.kv_sizing import (
    DEFAULT_CPU_KV_CACHE_FRACTION,
    DEFAULT_GPU_MEMORY_UTILIZATION,
)
from deepseek_runtime.server.backend_options import backend_options
from deepseek_runtime.server.config import add_config_arguments, config_from_args

pytestmark = pytest.mark.unit


def _native(argv: list[str], env: dict[str, str]) -> NativeEngineOptions:
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    options = backend_options(config_from_args(parser.parse_args(argv), env))
    assert isinstance(options, NativeEngineOptions)
    return options


def test_defaults(tmp_path: Path) -> None:
    options = _native(["--model", str(tmp_path)], {})
    assert options.gpu_memory_utilization == DEFAULT_GPU_MEMORY_UTILIZATION == 0.9
    assert options.cpu_kv_cache_fraction == DEFAULT_CPU_KV_CACHE_FRACTION == 0.5
    assert options.num_blocks is None and options.kv_cache_memory_bytes is None


def test_rendered_environment_and_flags(tmp_path: Path) -> None:
    env = {"DSR_GPU_MEMORY_UTILIZATION": "0.85", "DSR_CPU_KV_CACHE_FRACTION": "0.25"}
    options = _native(["--model", str(tmp_path)], env)
    assert (options.gpu_memory_utilization, options.cpu_kv_cache_fraction) == (0.85, 0.25)
    flags = ["--model", str(tmp_path), "--cpu-kv-cache-fraction", "0.4"]
    flags += ["--kv-cache-memory-bytes", "1048576"]
    options = _native(flags, env)
    assert (options.cpu_kv_cache_fraction, options.kv_cache_memory_bytes) == (0.4, 1 << 20)


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--cpu-kv-cache-fraction", "0"),
        ("--cpu-kv-cache-fraction", "1.01"),
        ("--gpu-memory-utilization", "-0.2"),
        ("--kv-cache-memory-bytes", "0"),
        ("--num-blocks", "-3"),
    ],
)
def test_out_of_range_names_the_option(tmp_path: Path, flag: str, value: str) -> None:
    with pytest.raises(ValueError, match=f"^{flag}: "):
        _native(["--model", str(tmp_path), flag, value], {})


def test_blocks_and_bytes_together_are_refused(tmp_path: Path) -> None:
    argv = ["--model", str(tmp_path), "--num-blocks", "4", "--kv-cache-memory-bytes", "9"]
    with pytest.raises(ValueError, match="at most one of num_blocks and kv_cache_memory_bytes"):
        _native(argv, {})
