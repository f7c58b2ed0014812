"""The planner's weight bytes are the bytes the runtime really holds, format by format.

A catalog model's shape is scaled down (layers, widths and vocabulary divided, the
attention head structure kept), written with ``make_tiny_checkpoint`` and loaded by the
runtime's ``ModelRunner`` in bf16 with ``--quantization none|int8|int4`` (groups of 128).
``runner.weight_bytes.total`` must equal the operator planner's
``checkpoint_bytes(architecture_from_config(config.json), fmt)`` within 1 %: the planner
sizes GPU pools with that formula, so a planner that counts int4 scales the runtime does
not hold (or misses the ones it does) plans too many or too few GPUs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from deepseek_operator.planning.architecture import architecture_from_config
from deepseek_operator.planning.catalog import catalog_config
from deepseek_operator.planning.memory import (
    INT4_GROUP_SIZE,
    Device,
    WeightFormat,
    checkpoint_bytes,
)
from deepseek_runtime.checkpoint.make_tiny import make_tiny_checkpoint
from deepseek_runtime.model.runner import ModelRunner

pytestmark = pytest.mark.unit

FORMATS: dict[str, WeightFormat] = {"none": "bf16", "int8": "int8", "int4": "int4"}
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _distill_qwen_1_5b() -> tuple[str, dict[str, Any]]:
    """R1-Distill-Qwen-1.5B with widths / 4-5 and layers / 7; 12 heads over 2 KV heads kept."""
    c = catalog_config("deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B")
    return "qwen2", {
        "hidden_size": c["hidden_size"] // 4,  # 384 = 3 int4 groups
        "intermediate_size": c["intermediate_size"] // 5,  # 1792 = 14 groups
        "num_hidden_layers": c["num_hidden_layers"] // 7,
        "num_attention_heads": c["num_attention_heads"],
        "num_key_value_heads": c["num_key_value_heads"],
        "vocab_size": 1024,
        "tie_word_embeddings": False,
    }


def _deepseek_v3() -> tuple[str, dict[str, Any]]:
    """DeepSeek-V3 (MLA, routed + shared experts, dense first layer) scaled down."""
    c = catalog_config("deepseek-ai/DeepSeek-V3")
    return "v3", {
        "hidden_size": c["hidden_size"] // 28,  # 256
        "intermediate_size": c["intermediate_size"] // 36,  # 512
        "moe_intermediate_size": c["moe_intermediate_size"] // 16,  # 128
        "num_hidden_layers": 3,
        "first_k_dense_replace": 1,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
        "q_lora_rank": c["q_lora_rank"] // 12,  # 128
        "kv_lora_rank": c["kv_lora_rank"] // 4,  # 128
        "qk_rope_head_dim": c["qk_rope_head_dim"],
        "qk_nope_head_dim": c["qk_nope_head_dim"],
        "v_head_dim": c["v_head_dim"],
        "n_routed_experts": 8,
        "n_shared_experts": c["n_shared_experts"],
        "num_experts_per_tok": 2,
        "vocab_size": 1024,
    }


@pytest.fixture(scope="module", params=[_distill_qwen_1_5b, _deepseek_v3], ids=["qwen2", "v3"])
def checkpoint(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    arch, overrides = request.param()
    return make_tiny_checkpoint(tmp_path_factory.mktemp(arch), arch, 0, overrides)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("quantization", list(FORMATS))
def test_planner_weight_bytes_match_the_runtime(
    checkpoint: Path, quantization: str, device: Device
) -> None:
    runner = ModelRunner.from_pretrained(
        checkpoint,
        dtype=torch.bfloat16,
        device=device,
        quantization=quantization,
        quantization_group_size=INT4_GROUP_SIZE,
        block_size=4,
        num_blocks=4,
    )
    held = runner.weight_bytes.total
    arch = architecture_from_config(json.loads((checkpoint / "config.json").read_text()))
    planned = checkpoint_bytes(arch, FORMATS[quantization], device)
    assert planned == pytest.approx(held, rel=0.01), (quantization, device, planned, held)


def test_int4_scales_count_for_the_device_that_holds_them() -> None:
    # CPU's packed int4 matmul keeps (scale, zero) pairs, CUDA scales only: the planner,
    # which sizes GPUs, must not count the zeros (3 % of an int4 model).
    _, overrides = _distill_qwen_1_5b()
    arch = architecture_from_config({"model_type": "qwen2", **overrides})
    cpu, cuda = checkpoint_bytes(arch, "int4", "cpu"), checkpoint_bytes(arch, "int4")
    assert cuda < cpu and checkpoint_bytes(arch, "int4", "cuda") == cuda
