"""``deepseek-runtime make-tiny``: write a random-weight checkpoint in Hugging Face layout.

Architectures: DeepSeek ``v3`` / ``v2`` (MLA + MoE) and the R1 distills' ``qwen2`` /
``llama`` (GQA).

Called by the CLI dispatcher (``add_arguments`` / ``run``), by tests and by the demo
(:func:`make_tiny_checkpoint`). The output is what a real checkpoint directory holds:
``config.json``, ``generation_config.json``, safetensors (single file or shards plus
``model.safetensors.index.json``, optionally FP8 e4m3 with 128x128 ``weight_scale_inv``),
``tokenizer.json`` and ``tokenizer_config.json`` (with a chat template). Weights are
scaled so activations and logits are of order one, which keeps numerical comparisons
meaningful.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from deepseek_runtime.checkpoint.dense_config import DenseConfig
from deepseek_runtime.checkpoint.model_config import parse_model_config
from deepseek_runtime.checkpoint.tiny_config import TINY_CONFIGS
from deepseek_runtime.checkpoint.tiny_weights import random_weights
from deepseek_runtime.checkpoint.tokenizer_build import (
    CHAT_TEMPLATE,
    DISTILL_CHAT_TEMPLATE,
    write_tokenizer,
)
from deepseek_runtime.checkpoint.weights import INDEX_FILE
from deepseek_runtime.kernels.fp8 import quantize_fp8_blocks

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def parse_value(text: str) -> Any:
    """``--set`` value: JSON (ints, floats, true/false, null, lists, objects), else a string."""
    lowered = text.strip()
    if lowered in ("True", "False", "None"):
        lowered = {"True": "true", "False": "false", "None": "null"}[lowered]
    try:
        return json.loads(lowered)
    except json.JSONDecodeError:
        return text


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["key=value", ...]`` -> dict; a missing ``=`` raises ValueError."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set {item!r}: expected key=value")
        out[key.strip()] = parse_value(value)
    return out


def _is_fp8_candidate(name: str, tensor: torch.Tensor) -> bool:
    """Linear weights that DeepSeek-V3 ships in FP8 (not norms, router, embeddings, lm_head)."""
    if tensor.dim() != 2 or not name.endswith("_proj.weight"):
        return False
    return ".self_attn." in name or ".mlp." in name


def _quantize(tensors: dict[str, torch.Tensor], block: int) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for name, tensor in tensors.items():
        if _is_fp8_candidate(name, tensor):
            out[name], out[f"{name}_scale_inv"] = quantize_fp8_blocks(tensor, (block, block))
        else:
            out[name] = tensor
    return out


def _write_shards(out_dir: Path, tensors: dict[str, torch.Tensor], shards: int) -> None:
    if shards <= 1:
        save_file(tensors, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
        return
    names = list(tensors)
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    per_shard = math.ceil(total / shards)
    groups: list[list[str]] = [[] for _ in range(shards)]
    used = 0
    for name in names:
        index = min(used // per_shard, shards - 1) if per_shard else 0
        groups[index].append(name)
        used += tensors[name].numel() * tensors[name].element_size()
    weight_map: dict[str, str] = {}
    for i, group in enumerate(groups, start=1):
        filename = f"model-{i:05d}-of-{shards:05d}.safetensors"
        save_file(
            {n: tensors[n] for n in group}, str(out_dir / filename), metadata={"format": "pt"}
        )
        weight_map.update({n: filename for n in group})
    index_doc = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (out_dir / INDEX_FILE).write_text(json.dumps(index_doc, indent=2) + "\n", encoding="utf-8")


def make_tiny_checkpoint(  # noqa: PLR0917 (positional order is the documented API)
    out_dir: str | Path,
    arch: str = "v3",
    seed: int = 0,
    overrides: dict[str, Any] | None = None,
    shards: int = 1,
    fp8: bool = False,
    fp8_block: int = 128,
    mtp: bool = False,
) -> Path:
    """Write a tiny random checkpoint and return its directory.

    Args:
        out_dir: directory to create (or fill).
        arch: ``"v3"``, ``"v2"``, ``"qwen2"`` or ``"llama"``.
        seed: random seed for the weights.
        overrides: config fields to set (win over the defaults). Setting
            ``num_attention_heads`` without ``num_key_value_heads`` derives the latter as
            transformers does (equal to the head count; MLA needs exactly that).
        shards: number of safetensors files (``> 1`` writes an index).
        fp8: store linear weights as FP8 e4m3 with ``fp8_block``-square block scales.
        mtp: also write a multi-token-prediction layer (index ``num_hidden_layers``).
    """
    if arch not in TINY_CONFIGS:
        raise ValueError(f"arch: {arch!r} is not one of {sorted(TINY_CONFIGS)}")
    if shards < 1:
        raise ValueError("shards: must be >= 1")
    data = copy.deepcopy(TINY_CONFIGS[arch])
    overrides = overrides or {}
    if "num_attention_heads" in overrides and "num_key_value_heads" not in overrides:
        data["num_key_value_heads"] = overrides["num_attention_heads"]
    data.update(overrides)
    if mtp:
        data["num_nextn_predict_layers"] = 1
    if fp8:
        data["quantization_config"] = {
            "activation_scheme": "dynamic",
            "fmt": "e4m3",
            "quant_method": "fp8",
            "weight_block_size": [fp8_block, fp8_block],
        }
    config = parse_model_config(data, "make-tiny config")
    if fp8 and isinstance(config, DenseConfig):
        raise ValueError("fp8: FP8 block-scaled checkpoints are DeepSeek-V3's format (v3/v2)")
    dtype_name = str(data.get("torch_dtype", "float32"))
    if dtype_name not in _DTYPES:
        raise ValueError(f"torch_dtype: {dtype_name!r} is not one of {sorted(_DTYPES)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tensors = random_weights(config, seed, mtp=mtp)
    tensors = {
        n: t.to(_DTYPES[dtype_name]) if t.is_floating_point() else t for n, t in tensors.items()
    }
    if fp8:
        tensors = _quantize(tensors, fp8_block)
    _write_shards(out, tensors, shards)
    (out / "config.json").write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    generation = {
        "bos_token_id": data.get("bos_token_id"),
        "eos_token_id": data.get("eos_token_id"),
    }
    (out / "generation_config.json").write_text(
        json.dumps(generation, indent=2) + "\n", encoding="utf-8"
    )
    template = DISTILL_CHAT_TEMPLATE if isinstance(config, DenseConfig) else CHAT_TEMPLATE
    write_tokenizer(out, config.vocab_size, config.max_position_embeddings, template)
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--arch", choices=sorted(TINY_CONFIGS), default="v3")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config field (value parsed as JSON: ints, floats, true, null, ...)",
    )
    parser.add_argument("--shards", type=int, default=1, help="number of safetensors shards")
    parser.add_argument("--fp8", action="store_true", help="store linear weights as FP8 e4m3")
    parser.add_argument("--fp8-block", type=int, default=128, help="FP8 scale block size")
    parser.add_argument(
        "--mtp", action="store_true", help="also write a multi-token-prediction layer"
    )
    parser.add_argument(
        "--train-seconds",
        type=float,
        default=0.0,
        help="then train it this many CPU seconds on the package's corpus and --train-text "
        "(checkpoint/tiny_train.py; cached by content hash; 0: keep random weights)",
    )
    parser.add_argument(
        "--train-text", type=Path, action="append", default=[], help="Markdown to train on"
    )


def run(args: argparse.Namespace) -> int:
    try:
        out = make_tiny_checkpoint(
            args.out,
            args.arch,
            args.seed,
            parse_overrides(args.overrides),
            args.shards,
            args.fp8,
            args.fp8_block,
            args.mtp,
        )
        if args.train_seconds > 0:
            from deepseek_runtime.checkpoint.tiny_train import train_checkpoint  # noqa: PLC0415

            report = train_checkpoint(out, args.arch, args.train_seconds, args.train_text)
            print(
                f"make-tiny: trained {report.steps} steps, loss {report.loss_first} -> "
                f"{report.loss_last} (see {out / 'MODEL_CARD.md'})",
                file=sys.stderr,
            )
    except ValueError as exc:
        print(f"make-tiny: error: {exc}")
        return 2
    print(out)
    return 0
