"""The native engine's capability table is what the runtime really does.

``deepseek_runtime.capabilities.NATIVE`` is the runtime's half of the operator/runtime
contract. Every architecture it lists loads and runs a step, every quantization it lists
is accepted on a checkpoint it applies to, and every limit it states is enforced by
``deepseek-runtime serve`` with exit code 2 and a message naming the option: the
quantizations and KV dtypes outside the row, int8 / int4 weights across ranks, and the
layouts a checkpoint cannot be split into (TP that does not divide its heads, PP deeper
than its layers, nodes that do not divide the ranks). The parallel layouts the row admits
are served through the API in ``tests/runtime/server/test_parallel_layouts_serve.py``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from deepseek_runtime.capabilities import NATIVE, PARALLEL_QUANTIZATIONS
from deepseek_runtime.checkpoint.make_tiny import make_tiny_checkpoint
from deepseek_runtime.checkpoint.model_config import MODEL_ARCHITECTURES
from deepseek_runtime.checkpoint.tiny_config import TINY_CONFIGS
from deepseek_runtime.model.runner import ModelRunner, SeqChunk

pytestmark = pytest.mark.unit

ARCH_OF_MODEL_TYPE = {config["model_type"]: arch for arch, config in TINY_CONFIGS.items()}
# int4 groups of 32 divide every linear; CPU int4 tiles 16 output rows (see quantization)
QUANT_FRIENDLY = {"q_lora_rank": 64, "kv_lora_rank": 56}


@pytest.mark.parametrize("model_type", NATIVE.architectures)
def test_every_listed_architecture_loads_and_runs(model_type: str, tmp_path: Path) -> None:
    assert model_type in MODEL_ARCHITECTURES
    path = make_tiny_checkpoint(tmp_path / model_type, ARCH_OF_MODEL_TYPE[model_type])
    runner = ModelRunner.from_pretrained(path, block_size=4, num_blocks=8)
    assert runner.execute([SeqChunk([5, 6, 7], 0, [1])]).shape == (1, 512)


@pytest.mark.parametrize("quantization", NATIVE.quantizations)
def test_every_listed_quantization_is_accepted(quantization: str, tmp_path: Path) -> None:
    path = make_tiny_checkpoint(tmp_path / "v3", "v3", 0, QUANT_FRIENDLY)
    runner = ModelRunner.from_pretrained(
        path, num_blocks=8, quantization=quantization, quantization_group_size=32
    )
    assert runner.execute([SeqChunk([5, 6], 0, [0])]).isfinite().all()


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--tensor-parallel-size", "3"], "--tensor-parallel-size 3 does not divide"),
        (["--pipeline-parallel-size", "4"], "--pipeline-parallel-size 4 is deeper than"),
        (["--tensor-parallel-size", "2", "--quantization", "int8"], "--quantization int8"),
        (["--tensor-parallel-size", "2", "--nnodes", "3"], "--nnodes 3 must divide"),
        (["--nnodes", "2", "--node-rank", "2"], "--node-rank 2"),
        (["--kv-cache-dtype", "fp8"], "--kv-cache-dtype fp8"),
        (["--quantization", "awq"], "--quantization awq"),
    ],
)
def test_what_the_table_excludes_exits_2_naming_the_option(
    flags: list[str], named: str, tmp_path: Path
) -> None:
    assert "fp8" not in NATIVE.kv_cache_dtypes and "int8" not in PARALLEL_QUANTIZATIONS
    model = make_tiny_checkpoint(tmp_path / "v3", "v3")  # 4 heads, 3 layers
    result = subprocess.run(
        [sys.executable, "-m", "deepseek_runtime.cli", "serve", "--model", str(model), *flags],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert named in result.stderr, result.stderr


def test_the_row_admits_every_parallel_layout_and_says_where_it_ran() -> None:
    assert NATIVE.max_tensor_parallel is None and NATIVE.max_pipeline_parallel is None
    assert NATIVE.expert_parallel and NATIVE.multi_node
    assert NATIVE.parallel_verified_on == ("cpu",)  # no multi-GPU run has been made
