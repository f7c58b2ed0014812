"""The planner's ``maxTokensInCache`` is the token count the runtime's KV sizing arrives at.

A catalog model's shape is scaled down (widths and layers divided, the attention kind and
head structure kept: MLA for DeepSeek-V3, 12 query over 2 KV heads for
R1-Distill-Qwen-1.5B), written with ``make_tiny_checkpoint`` and loaded by the runtime's
``ModelRunner`` in bf16 (the KV dtype the planner assumes for ``kvCache.dtype: auto``).

* Bytes per token: the planner's ``kv_bytes_per_token`` times the block size is the
  bytes of one block of the cache the runtime allocated, and its tensor / pipeline
  split is the runtime's (``kv_head_bounds``, ``partition_layers``).
* The whole sizing, for one device-memory budget: the runtime measures its weights
  (what torch holds) and the peak activations of its max-size dummy batch (on CPU: the
  peak of torch's CPU allocations, ``kv_profile.peak_cpu_allocation``), and applies
  ``engine.kv_sizing``'s GPU rule; the planner estimates the same from ``config.json``.
  The two token counts agree within 10 %. The budget is chosen so that the KV cache
  gets about as much as weights and activations together: an error of 20 % in either
  estimate moves the result by about 10 %. The planner's fixed 2 GiB for the CUDA
  context / NCCL / graphs is what the runtime measures as non-torch memory on a GPU;
  a CPU has none, so the comparison hands the runtime the planner's figure for it.
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
    RUNTIME_OVERHEAD_BYTES,
    Sharding,
    gpu_memory,
    kv_bytes_per_token,
)
from deepseek_runtime.backends.kv_profile import (
    dummy_batch_blocks,
    peak_cpu_allocation,
    run_dummy_batch,
)
from deepseek_runtime.backends.kv_setup import runner_bytes_per_block
from deepseek_runtime.checkpoint.make_tiny import make_tiny_checkpoint
from deepseek_runtime.engine.kv_sizing import GpuMemoryProfile, blocks_for, gpu_kv_budget
from deepseek_runtime.model.runner import ModelRunner
from deepseek_runtime.parallel.config import kv_head_bounds
from deepseek_runtime.parallel.pipeline import partition_layers

pytestmark = pytest.mark.unit

BLOCK = 16
BATCHED_TOKENS = 512
MAX_SEQS = 8
UTILIZATION = 0.9


def _deepseek_v3() -> tuple[str, dict[str, Any]]:
    """DeepSeek-V3: MLA with the real rope width, kv_lora_rank / 4, 2 of 61 layers."""
    c = catalog_config("deepseek-ai/DeepSeek-V3")
    return "v3", {
        "hidden_size": c["hidden_size"] // 14,  # 512
        "intermediate_size": c["intermediate_size"] // 18,  # 1024
        "moe_intermediate_size": c["moe_intermediate_size"] // 8,  # 256
        "num_hidden_layers": 2,
        "first_k_dense_replace": 1,
        "num_attention_heads": 8,
        "num_key_value_heads": 8,
        "q_lora_rank": c["q_lora_rank"] // 6,  # 256
        "kv_lora_rank": c["kv_lora_rank"] // 4,  # 128
        "qk_rope_head_dim": c["qk_rope_head_dim"],
        "qk_nope_head_dim": c["qk_nope_head_dim"] // 2,
        "v_head_dim": c["v_head_dim"] // 2,
        "n_routed_experts": 8,
        "n_shared_experts": c["n_shared_experts"],
        "num_experts_per_tok": 2,
        "vocab_size": 2048,
    }


def _distill_qwen_1_5b() -> tuple[str, dict[str, Any]]:
    """R1-Distill-Qwen-1.5B: 12 query heads over 2 KV heads kept, widths / 4-5, 4 layers."""
    c = catalog_config("deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B")
    return "qwen2", {
        "hidden_size": c["hidden_size"] // 4,  # 384
        "intermediate_size": c["intermediate_size"] // 5,  # 1792
        "num_hidden_layers": 4,
        "num_attention_heads": c["num_attention_heads"],
        "num_key_value_heads": c["num_key_value_heads"],
        "vocab_size": 2048,
        "tie_word_embeddings": False,
    }


@pytest.fixture(scope="module", params=[_deepseek_v3, _distill_qwen_1_5b], ids=["v3", "qwen2"])
def checkpoint(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    arch, overrides = request.param()
    return make_tiny_checkpoint(tmp_path_factory.mktemp(arch), arch, 0, overrides)


@pytest.fixture(scope="module")
def runner(checkpoint: Path) -> ModelRunner:
    torch.manual_seed(0)
    return ModelRunner.from_pretrained(
        checkpoint,
        dtype=torch.bfloat16,
        device="cpu",
        block_size=BLOCK,
        num_blocks=dummy_batch_blocks(BATCHED_TOKENS, MAX_SEQS, BLOCK),
    )


def _arch(checkpoint: Path) -> Any:
    return architecture_from_config(json.loads((checkpoint / "config.json").read_text()))


def test_bytes_per_token_are_the_runtime_cache_block(checkpoint: Path, runner: ModelRunner) -> None:
    arch = _arch(checkpoint)
    planned = kv_bytes_per_token(arch, Sharding(1, 1, 1), kv_dtype_bytes=2) * BLOCK
    assert planned == runner_bytes_per_block(runner)
    assert planned == runner.kv_bytes_per_block()


@pytest.mark.parametrize("tensor", [1, 2, 4, 12])
def test_tensor_split_of_kv_heads_matches_the_runtime(checkpoint: Path, tensor: int) -> None:
    arch = _arch(checkpoint)
    if arch.attention == "mla":  # one latent every rank keeps whole
        expected = arch.kv_lora_rank + arch.qk_rope_head_dim
        assert arch.kv_elements_per_token_layer(tensor) == expected
        return
    for rank in range(tensor):
        start, stop = kv_head_bounds(arch.num_kv_heads, tensor, rank)
        assert arch.kv_elements_per_token_layer(tensor) == 2 * (stop - start) * arch.head_dim


@pytest.mark.parametrize(("layers", "stages"), [(61, 2), (61, 4), (27, 3), (4, 4)])
def test_pipeline_busiest_stage_matches_the_runtime(layers: int, stages: int) -> None:
    ranges = partition_layers(layers, stages)
    assert max(len(r) for r in ranges) == -(-layers // stages)  # what the planner charges


def test_max_tokens_in_cache_agree_within_10_percent(checkpoint: Path, runner: ModelRunner) -> None:
    arch = _arch(checkpoint)
    weights = runner.resident_weight_bytes()
    activations = peak_cpu_allocation(lambda: run_dummy_batch(runner, BATCHED_TOKENS, MAX_SEQS))
    assert activations > 0
    # the KV cache gets about what weights and activations take together
    device_memory = int((RUNTIME_OVERHEAD_BYTES + 2 * (weights + activations)) / UTILIZATION)

    profile = GpuMemoryProfile(device_memory, weights, activations, RUNTIME_OVERHEAD_BYTES)
    budget = gpu_kv_budget(profile, UTILIZATION)
    runtime_tokens = blocks_for(budget, runner_bytes_per_block(runner)) * BLOCK

    planned = gpu_memory(
        arch,
        "bf16",
        Sharding(1, 1, 1),
        gpu_memory_bytes=device_memory,
        utilization=UTILIZATION,
        kv_dtype_bytes=2,
        batched_tokens=BATCHED_TOKENS,
        max_seqs=MAX_SEQS,
    )
    detail = {
        "runtime": {"weights": weights, "activations": activations, "tokens": runtime_tokens},
        "planner": {
            "weights": planned.weights,
            "activations": planned.overhead - RUNTIME_OVERHEAD_BYTES,
            "tokens": planned.max_tokens,
        },
    }
    assert runtime_tokens > 0, detail
    print(json.dumps(detail))
    assert planned.max_tokens == pytest.approx(runtime_tokens, rel=0.10), detail
