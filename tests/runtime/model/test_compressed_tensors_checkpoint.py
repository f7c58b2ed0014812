"""Pre-quantized compressed-tensors checkpoints load through the runner and match.

Each checkpoint is written by the ``compressed-tensors`` library itself (quantization
config applied to transformers' model of a tiny checkpoint, scales observed, the model
compressed and saved with the library's ``config.json`` section). Our runner loads it
with ``--quantization auto`` (its own format: int4 / int8 kept packed, FP8 kept in FP8) and
must give the logits of the library's own decompression run through transformers, and of
transformers loading the compressed directory itself.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from ds_model_helpers import BlockAllocator, run_prefill_then_decode
from safetensors.torch import save_file

from deepseek_runtime.checkpoint.make_tiny import make_tiny_checkpoint
from deepseek_runtime.kernels.fp8 import Fp8Weight
from deepseek_runtime.kernels.quant.int4 import Int4Weight
from deepseek_runtime.kernels.quant.int8 import Int8Weight
from deepseek_runtime.model.runner import ModelRunner

ct = pytest.importorskip("compressed_tensors")
from compressed_tensors.compressors import ModelCompressor  # noqa: E402
from compressed_tensors.quantization import (  # noqa: E402
    QuantizationArgs,
    QuantizationConfig,
    QuantizationScheme,
    apply_quantization_config,
)
from compressed_tensors.quantization.utils import calculate_qparams  # noqa: E402

pytestmark = [pytest.mark.unit, pytest.mark.reference]

TOL = 1e-4
CASES: dict[str, tuple[dict[str, Any], str, type]] = {
    "int4-group32-packed": (
        {"num_bits": 4, "type": "int", "symmetric": True, "strategy": "group", "group_size": 32},
        "pack-quantized",
        Int4Weight,
    ),
    "int8-channel-packed": (
        {"num_bits": 8, "type": "int", "symmetric": True, "strategy": "channel"},
        "pack-quantized",
        Int8Weight,
    ),
    "int8-channel-naive": (
        {"num_bits": 8, "type": "int", "symmetric": True, "strategy": "channel"},
        "naive-quantized",
        Int8Weight,
    ),
    "fp8-channel": (
        {"num_bits": 8, "type": "float", "symmetric": True, "strategy": "channel"},
        "float-quantized",
        Fp8Weight,
    ),
}


def _observe(linear: torch.nn.Linear, args: QuantizationArgs) -> None:
    """Min/max scales computed by the library, written into the module's parameters."""
    w = linear.weight.data.float()
    rows, cols = w.shape
    if args.strategy == "group":
        view = w.reshape(rows, cols // args.group_size, args.group_size)
        lo, hi = view.amin(-1), view.amax(-1)
    else:
        lo, hi = w.amin(1, keepdim=True), w.amax(1, keepdim=True)
    scale, _ = calculate_qparams(lo, hi, args)
    linear.weight_scale.data.copy_(scale.reshape(linear.weight_scale.shape))


def _compressed_checkpoint(src: Path, out: Path, args: dict[str, Any], fmt: str) -> Any:
    """Write ``out`` with the library; return transformers' model holding the library's
    own decompression of it."""
    from transformers import AutoModelForCausalLM  # noqa: PLC0415 (heavy, reference only)

    model = AutoModelForCausalLM.from_pretrained(
        str(src), dtype=torch.float32, attn_implementation="eager"
    ).eval()
    weights = QuantizationArgs(**args)
    config = QuantizationConfig(
        config_groups={"group_0": QuantizationScheme(targets=["Linear"], weights=weights)},
        format=fmt,
        ignore=["lm_head"],
    )
    apply_quantization_config(model, config)
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and name != "lm_head":
            _observe(module, weights)
    compressor = ModelCompressor(quantization_config=config, force_compression_format=fmt)
    compressor.compress_model(model)
    out.mkdir(parents=True)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    for name in (
        "config.json",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
    ):
        shutil.copy(src / name, out / name)
    compressor.update_config(str(out))
    compressor.decompress_model(model)
    return model


@pytest.mark.parametrize("case", list(CASES))
def test_runner_matches_the_library_decompression(case: str, tmp_path: Path) -> None:
    args, fmt, kind = CASES[case]
    src = make_tiny_checkpoint(tmp_path / "dense", "qwen2", seed=8)
    out = tmp_path / case
    reference = _compressed_checkpoint(src, out, args, fmt)
    runner = ModelRunner.from_pretrained(out, block_size=4, num_blocks=32)
    assert isinstance(runner.model.layers[0].attn.o_proj, kind)  # type: ignore[attr-defined]
    assert runner.weight_bytes.linear < runner.weight_bytes.linear_bf16_equivalent * 0.8
    ids = torch.randint(6, 512, (14,), generator=torch.Generator().manual_seed(4)).tolist()
    with torch.no_grad():
        expected = reference(torch.tensor([ids])).logits[0].float()
    got = run_prefill_then_decode(runner, ids, 8, BlockAllocator(32, 4, seed=2))
    diffs = [(g - expected[7 + i]).abs().max().item() for i, g in enumerate(got)]
    assert max(diffs) < TOL, diffs
    with pytest.raises(ValueError, match="already quantized"):
        ModelRunner.from_pretrained(out, num_blocks=8, quantization="int8")


def test_transformers_loading_the_same_directory_agrees(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM  # noqa: PLC0415 (heavy, reference only)

    args, fmt, _ = CASES["int4-group32-packed"]
    src = make_tiny_checkpoint(tmp_path / "dense", "qwen2", seed=9)
    out = tmp_path / "ct"
    _compressed_checkpoint(src, out, args, fmt)
    loaded = AutoModelForCausalLM.from_pretrained(
        str(out), dtype=torch.float32, attn_implementation="eager"
    ).eval()
    runner = ModelRunner.from_pretrained(out, block_size=4, num_blocks=32)
    ids = torch.randint(6, 512, (10,), generator=torch.Generator().manual_seed(5)).tolist()
    with torch.no_grad():
        expected = loaded(torch.tensor([ids])).logits[0].float()
    got = run_prefill_then_decode(runner, ids, 10, BlockAllocator(32, 4, seed=3))
    assert (got[0] - expected[-1]).abs().max().item() < TOL
