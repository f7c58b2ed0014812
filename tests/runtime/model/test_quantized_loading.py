"""``--quantization int8|int4|fp8``: bf16/fp32 checkpoints quantized at load, held quantized.

On tiny V3 and Qwen2 checkpoints: every linear is held in the requested format (int8 per
output channel, int4 in groups, FP8 blocks), resident linear bytes are about 1/2 and 1/4
of bf16 plus scales, the logits stay close to the dense model's, and the error falls as
the bit count rises. What cannot be honoured is a ConfigError naming the option.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from ds_model_helpers import BlockAllocator, run_prefill_then_decode

from deepseek_runtime.checkpoint.config import ConfigError
from deepseek_runtime.kernels.cpu.packed import PackedWeight, StackedPackedWeights
from deepseek_runtime.kernels.fp8 import Fp8Weight
from deepseek_runtime.kernels.quant.experts import StackedInt4Weights, StackedInt8Weights
from deepseek_runtime.kernels.quant.int4 import Int4Weight
from deepseek_runtime.kernels.quant.int8 import Int8Weight
from deepseek_runtime.model.runner import ModelRunner

pytestmark = pytest.mark.unit

# int4 groups of 32 must divide every linear's input width (q_lora 64, not the default 48)
# and CPU int4 tiles of 16 rows its output width (latent 56 + 8, not 32 + 8)
V3 = ("v3", {"overrides": {"q_lora_rank": 64, "kv_lora_rank": 56}})
QWEN2 = ("qwen2", {})
GROUP = 32


def _runner(
    make_ckpt: Callable[..., Path], model: tuple[str, dict[str, Any]], q: str
) -> ModelRunner:
    arch, kwargs = model
    path = make_ckpt(f"quant-{arch}", arch, **kwargs)
    return ModelRunner.from_pretrained(
        path, block_size=4, num_blocks=32, quantization=q, quantization_group_size=GROUP
    )


def _logprobs(runner: ModelRunner) -> torch.Tensor:
    ids = torch.randint(6, 512, (16,), generator=torch.Generator().manual_seed(3)).tolist()
    out = run_prefill_then_decode(runner, ids, 8, BlockAllocator(32, 4, seed=1))
    return torch.log_softmax(torch.stack(out), dim=-1)


@pytest.mark.parametrize("model", [V3, QWEN2], ids=["v3", "qwen2"])
def test_error_falls_as_bits_rise_and_memory_shrinks(
    make_ckpt: Callable[..., Path], model: tuple[str, dict[str, Any]]
) -> None:
    dense = _runner(make_ckpt, model, "none")
    reference = _logprobs(dense)
    errors: dict[str, float] = {}
    ratios: dict[str, float] = {}
    for q in ("int8", "fp8", "int4"):
        runner = _runner(make_ckpt, model, q)
        got = _logprobs(runner)
        errors[q] = (got - reference).abs().max().item()
        held = runner.weight_bytes
        ratios[q] = held.linear / held.linear_bf16_equivalent
        # the rest of the model (embeddings, norms, router, kv_b) is untouched
        assert held.other == dense.weight_bytes.other
    print(f"{model[0]}: max logprob error {errors}, linear bytes / bf16 {ratios}")
    assert 0 < errors["int8"] < errors["int4"] and errors["fp8"] < errors["int4"]
    assert errors["int8"] < 0.25 and errors["int4"] < 3.0
    dense_ratio = dense.weight_bytes.linear / dense.weight_bytes.linear_bf16_equivalent
    assert dense_ratio == 2.0  # fp32 checkpoint held in fp32
    # int8: 1 byte per weight + one fp32 scale per row; int4: 1/2 byte + fp32 group scales
    assert 0.5 < ratios["int8"] < 0.56
    assert 0.25 < ratios["int4"] < 0.4
    assert 0.5 < ratios["fp8"] < 0.75  # 1 byte + block scales (tiny layers: partial blocks)


def test_weights_are_held_quantized_and_experts_stacked(make_ckpt: Callable[..., Path]) -> None:
    int8 = _runner(make_ckpt, V3, "int8")
    layer = int8.model.layers[1]  # type: ignore[attr-defined]
    assert isinstance(layer.attn.q_b_proj, Int8Weight)
    assert isinstance(layer.attn.o_proj, Int8Weight)
    assert isinstance(layer.mlp.w_gate_up, StackedInt8Weights) and len(layer.mlp.w_gate_up) == 8
    assert isinstance(layer.mlp.shared.gate_up, Int8Weight)
    assert layer.attn.w_uk.dtype == torch.float32  # kv_b stays dense (absorbed form)
    int4 = _runner(make_ckpt, V3, "int4")
    layer = int4.model.layers[1]  # type: ignore[attr-defined]
    assert isinstance(layer.mlp.w_down, StackedInt4Weights) and layer.mlp.w_down.group_size == GROUP
    assert isinstance(int4.model.layers[0].mlp.gate_up, Int4Weight)  # type: ignore[attr-defined]
    fp8 = _runner(make_ckpt, QWEN2, "fp8")
    assert isinstance(fp8.model.layers[0].attn.o_proj, Fp8Weight)  # type: ignore[attr-defined]
    dense = _runner(make_ckpt, V3, "none")  # fp32 on CPU: packed for the native kernels
    packed = dense.model.layers[1].mlp.w_gate_up  # type: ignore[attr-defined]
    assert isinstance(packed, StackedPackedWeights) and packed.panels.shape == (8, 4, 64, 16)
    assert isinstance(dense.model.layers[1].attn.o_proj, PackedWeight)  # type: ignore[attr-defined]
    arch, kwargs = V3
    torch_gemms = ModelRunner.from_pretrained(
        make_ckpt(f"quant-{arch}", arch, **kwargs), num_blocks=8, cpu_kernels="torch"
    )
    stack = torch_gemms.model.layers[1].mlp.w_gate_up  # type: ignore[attr-defined]
    assert isinstance(stack, torch.Tensor) and stack.shape == (8, 64, 64)
    assert not torch_gemms.cpu_kernels.packed and dense.cpu_kernels.packed
    assert not int8.cpu_kernels.packed and "quantized" in int8.cpu_kernels.reason


def test_what_cannot_be_honoured_is_refused(make_ckpt: Callable[..., Path]) -> None:
    path = make_ckpt("quant-v3-default", "v3")  # q_lora 48: int4 groups of 32 do not fit
    with pytest.raises(ConfigError, match=r"q_a_proj|q_b_proj|kv_a_proj"):
        ModelRunner.from_pretrained(
            path, num_blocks=8, quantization="int4", quantization_group_size=32
        )
    with pytest.raises(ConfigError, match=r"group size|CPU int4 kernel"):
        ModelRunner.from_pretrained(
            path, num_blocks=8, quantization="int4", quantization_group_size=16
        )
    with pytest.raises(ConfigError, match="--quantization 'int3'"):
        ModelRunner.from_pretrained(path, num_blocks=8, quantization="int3")
