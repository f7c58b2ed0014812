"""Checkpoint loading: sharded / FP8 / MTP layouts load; bad checkpoints fail naming the culprit."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from ds_model_helpers import BlockAllocator, rewrite_tensor, run_prefill_then_decode

from deepseek_runtime.checkpoint.config import ConfigError
from deepseek_runtime.checkpoint.make_tiny import make_tiny_checkpoint
from deepseek_runtime.checkpoint.model_config import load_model_config
from deepseek_runtime.checkpoint.weights import INDEX_FILE, CheckpointError
from deepseek_runtime.kernels.fp8 import (
    FP8_DTYPE,
    Fp8Weight,
    dequantize_fp8_blocks,
    quantize_fp8_blocks,
)
from deepseek_runtime.model.moe import MoE
from deepseek_runtime.model.runner import ModelRunner

pytestmark = pytest.mark.unit

IDS = [7, 100, 33, 250, 19, 401, 12, 77, 300]


def _logits(path: Path) -> torch.Tensor:
    runner = ModelRunner.from_pretrained(path, block_size=4, num_blocks=16)
    return torch.stack(run_prefill_then_decode(runner, IDS, 5, BlockAllocator(16, 4)))


def _edit_config(path: Path, **changes: object) -> None:
    config = json.loads((path / "config.json").read_text())
    config.update(changes)
    (path / "config.json").write_text(json.dumps(config))


def test_sharded_and_mtp_checkpoints_load_the_same_weights(tmp_path: Path) -> None:
    single = make_tiny_checkpoint(tmp_path / "single", "v3", seed=4)
    sharded = make_tiny_checkpoint(tmp_path / "sharded", "v3", seed=4, shards=3)
    with_mtp = make_tiny_checkpoint(tmp_path / "mtp", "v3", seed=4, mtp=True)
    index = json.loads((sharded / INDEX_FILE).read_text())
    assert len(set(index["weight_map"].values())) == 3
    assert any(name.startswith("model.layers.3.") for name in _names(with_mtp))
    reference = _logits(single)
    assert torch.allclose(_logits(sharded), reference, atol=1e-5, rtol=0)
    # the MTP layer (index 3) is skipped
    assert torch.allclose(_logits(with_mtp), reference, atol=1e-5, rtol=0)


def _names(path: Path) -> list[str]:
    from safetensors import safe_open  # noqa: PLC0415

    with safe_open(str(path / "model.safetensors"), framework="pt") as f:
        return list(f.keys())


def test_fp8_checkpoint_is_close_to_the_unquantized_one(tmp_path: Path) -> None:
    plain = make_tiny_checkpoint(tmp_path / "plain", "v3", seed=6)
    fp8 = make_tiny_checkpoint(tmp_path / "fp8", "v3", seed=6, fp8=True)
    names = _names(fp8)
    assert "model.layers.1.mlp.experts.0.down_proj.weight_scale_inv" in names
    assert "model.layers.1.mlp.gate.weight_scale_inv" not in names  # router stays high precision
    config = load_model_config(fp8)
    assert config.fp8_block == (128, 128)
    diff = (_logits(plain) - _logits(fp8)).abs().max().item()
    assert 0 < diff < 0.5


def test_bf16_checkpoint_loads(tmp_path: Path) -> None:
    path = make_tiny_checkpoint(tmp_path / "bf16", "v2", overrides={"torch_dtype": "bfloat16"})
    from safetensors import safe_open  # noqa: PLC0415

    with safe_open(str(path / "model.safetensors"), framework="pt") as f:
        assert f.get_tensor("model.embed_tokens.weight").dtype == torch.bfloat16
    assert torch.isfinite(_logits(path)).all()


def test_missing_tensor_is_named(tmp_path: Path) -> None:
    path = make_tiny_checkpoint(tmp_path / "m", "v3")
    name = "model.layers.2.mlp.experts.5.up_proj.weight"
    rewrite_tensor(path, name, lambda t: None)
    with pytest.raises(CheckpointError, match=name.replace(".", r"\.")):
        ModelRunner.from_pretrained(path, num_blocks=4)


def test_wrong_shape_is_named(tmp_path: Path) -> None:
    path = make_tiny_checkpoint(tmp_path / "s", "v3")
    name = "model.layers.0.self_attn.kv_b_proj.weight"
    rewrite_tensor(path, name, lambda t: t[:, :-1].contiguous())
    with pytest.raises(CheckpointError, match=r"kv_b_proj\.weight.*shape"):
        ModelRunner.from_pretrained(path, num_blocks=4)


def test_missing_fp8_scale_is_named(tmp_path: Path) -> None:
    path = make_tiny_checkpoint(tmp_path / "f", "v3", fp8=True)
    name = "model.layers.0.self_attn.o_proj.weight_scale_inv"
    rewrite_tensor(path, name, lambda t: None)
    with pytest.raises(CheckpointError, match=name.replace(".", r"\.")):
        ModelRunner.from_pretrained(path, num_blocks=4)


def test_missing_shard_is_named(tmp_path: Path) -> None:
    path = make_tiny_checkpoint(tmp_path / "sh", "v2", shards=2)
    (path / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(CheckpointError, match="model-00002-of-00002"):
        ModelRunner.from_pretrained(path, num_blocks=4)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"model_type": "llama"}, "model_type"),
        ({"architectures": ["LlamaForCausalLM"]}, "architectures"),
        ({"n_group": 3}, "n_group"),
        ({"topk_group": 9}, "topk_group"),
        ({"hidden_act": "gelu"}, "hidden_act"),
        ({"kv_lora_rank": "big"}, "kv_lora_rank"),
        ({"rope_scaling": {"type": "longrope", "factor": 2.0}}, "rope_scaling"),
        ({"quantization_config": {"quant_method": "gptq"}}, "quant_method"),
        ({"router_group_mask": "nan"}, "router_group_mask"),
    ],
)
def test_bad_config_names_the_field(
    make_ckpt: Callable[..., Path], tmp_path: Path, changes: dict[str, object], field: str
) -> None:
    path = tmp_path / "c"
    path.mkdir()
    base = make_ckpt("loader-base", "v3")
    (path / "config.json").write_text((base / "config.json").read_text())
    _edit_config(path, **changes)
    with pytest.raises(ConfigError, match=field):
        load_model_config(path)


def test_missing_required_field_is_named(tmp_path: Path) -> None:
    path = make_tiny_checkpoint(tmp_path / "r", "v2")
    config = json.loads((path / "config.json").read_text())
    del config["kv_lora_rank"]
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="kv_lora_rank"):
        ModelRunner.from_pretrained(path, num_blocks=4)


def test_fp8_block_quantization_round_trip() -> None:
    w = torch.randn(70, 300)
    q, scale = quantize_fp8_blocks(w, (32, 128))
    assert q.dtype == FP8_DTYPE and scale.shape == (3, 3)
    back = dequantize_fp8_blocks(q, scale, (32, 128))
    assert (back - w).abs().max() <= 0.07 * w.abs().max()
    with pytest.raises(ValueError, match="weight_scale_inv"):
        dequantize_fp8_blocks(q, scale[:2], (32, 128))


@pytest.mark.parametrize("block", [32, 128])
def test_fp8_kept_quantized_matches_dequantized_at_load(tmp_path: Path, block: int) -> None:
    path = make_tiny_checkpoint(tmp_path / "k", "v3", seed=8, fp8=True, fp8_block=block)
    dense = ModelRunner.from_pretrained(path, block_size=4, num_blocks=16)
    kept = ModelRunner.from_pretrained(path, block_size=4, num_blocks=16, keep_fp8=True)
    attn = kept.model.layers[1].attn
    assert isinstance(attn.o_proj, Fp8Weight) and attn.o_proj.data.dtype == FP8_DTYPE
    moe = kept.model.layers[1].mlp
    assert isinstance(moe, MoE) and isinstance(moe.w_down[0], Fp8Weight)
    # gate and up fuse into one FP8 weight when the rows align to the scale blocks
    assert isinstance(moe.w_gate_up[0], Fp8Weight) == (block == 32)
    alloc = BlockAllocator(16, 4)
    a = torch.stack(run_prefill_then_decode(dense, IDS, 5, alloc))
    b = torch.stack(run_prefill_then_decode(kept, IDS, 5, BlockAllocator(16, 4)))
    assert (a - b).abs().max().item() < 1e-5


def test_index_naming_a_tensor_its_shard_lacks(tmp_path: Path) -> None:
    path = make_tiny_checkpoint(tmp_path / "ix", "v2", shards=2)
    index = json.loads((path / INDEX_FILE).read_text())
    name = "model.layers.0.self_attn.o_proj.weight"
    other = next(f for f in set(index["weight_map"].values()) if f != index["weight_map"][name])
    index["weight_map"][name] = other
    (path / INDEX_FILE).write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match=name.replace(".", r"\.")):
        ModelRunner.from_pretrained(path, num_blocks=4)
