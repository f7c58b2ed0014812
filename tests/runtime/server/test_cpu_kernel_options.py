"""``--cpu-kernels`` from the command line to the model runner, and what it refuses."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch

from deepseek_runtime.backends.options import NativeEngineOptions
from deepseek_runtime.checkpoint.config import ConfigError
from deepseek_runtime.checkpoint.make_tiny import make_tiny_checkpoint
from deepseek_runtime.kernels.cpu.packed import PackedWeight
from deepseek_runtime.model.runner import ModelRunner
from deepseek_runtime.server.backend_options import backend_options
from deepseek_runtime.server.config import add_config_arguments, config_from_args

pytestmark = pytest.mark.unit


def _options(argv: list[str]) -> object:
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    return backend_options(config_from_args(parser.parse_args(argv), {}))


def test_flag_reaches_the_native_options(tmp_path: Path) -> None:
    default = _options(["--model", str(tmp_path)])
    assert isinstance(default, NativeEngineOptions) and default.cpu_kernels == "auto"
    chosen = _options(["--model", str(tmp_path), "--cpu-kernels", "torch"])
    assert isinstance(chosen, NativeEngineOptions) and chosen.cpu_kernels == "torch"


def test_bad_values_and_other_engines_are_refused(tmp_path: Path) -> None:
    with pytest.raises((ValueError, SystemExit)):
        _options(["--model", str(tmp_path), "--cpu-kernels", "fast"])
    with pytest.raises(ValueError, match="native engine's, not vllm's"):
        _options(["--model", str(tmp_path), "--engine", "vllm", "--cpu-kernels", "packed"])


def test_runner_loads_what_the_flag_says(tmp_path: Path) -> None:
    path = make_tiny_checkpoint(tmp_path / "qwen2", "qwen2")
    packed = ModelRunner.from_pretrained(path, num_blocks=8, cpu_kernels="packed")
    plain = ModelRunner.from_pretrained(path, num_blocks=8, cpu_kernels="torch")
    assert packed.cpu_kernels.packed and not plain.cpu_kernels.packed
    assert isinstance(packed.model.layers[0].attn.qkv, PackedWeight)  # type: ignore[attr-defined]
    assert isinstance(plain.model.layers[0].attn.qkv, torch.Tensor)  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="--cpu-kernels packed: the packed kernels are fp32"):
        ModelRunner.from_pretrained(path, num_blocks=8, dtype=torch.bfloat16, cpu_kernels="packed")
    with pytest.raises(ConfigError, match="--cpu-kernels packed: the weights are quantized"):
        ModelRunner.from_pretrained(path, num_blocks=8, quantization="int8", cpu_kernels="packed")
    bf16 = ModelRunner.from_pretrained(path, num_blocks=8, dtype=torch.bfloat16)
    assert not bf16.cpu_kernels.packed and "fp32" in bf16.cpu_kernels.reason
