"""Helpers for the model tests: block allocation, the transformers reference, FP8 copies."""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from deepseek_runtime.model.runner import ModelRunner, SeqChunk


class BlockAllocator:
    """The simplest possible scheduler-side allocator: hand out shuffled free block ids."""

    def __init__(self, num_blocks: int, block_size: int, seed: int = 0) -> None:
        self.free = list(range(num_blocks))
        random.Random(seed).shuffle(self.free)
        self.block_size = block_size

    def grow(self, table: list[int], tokens: int) -> list[int]:
        while len(table) * self.block_size < tokens:
            table.append(self.free.pop())
        return table


def dequantized_copy(src: Path, dst: Path) -> Path:
    """An fp32 copy of an FP8 checkpoint (independent of the runtime's dequantizer)."""
    dst.mkdir(parents=True, exist_ok=True)
    config = json.loads((src / "config.json").read_text())
    block = config.pop("quantization_config")["weight_block_size"]
    tensors: dict[str, torch.Tensor] = {}
    for shard in sorted(src.glob("*.safetensors")):
        tensors.update(load_file(str(shard)))
    out: dict[str, torch.Tensor] = {}
    for name, tensor in tensors.items():
        if name.endswith("_scale_inv"):
            continue
        if tensor.dtype == torch.float8_e4m3fn:
            scale = tensors[f"{name}_scale_inv"]
            w = tensor.float().clone()
            for i in range(scale.shape[0]):
                for j in range(scale.shape[1]):
                    rows = slice(i * block[0], (i + 1) * block[0])
                    cols = slice(j * block[1], (j + 1) * block[1])
                    w[rows, cols] *= scale[i, j]
            out[name] = w
        else:
            out[name] = tensor.float()
    save_file(out, str(dst / "model.safetensors"))
    (dst / "config.json").write_text(json.dumps(config))
    shutil.copy(src / "generation_config.json", dst / "generation_config.json")
    return dst


def rewrite_tensor(
    model_dir: Path, name: str, fn: Callable[[torch.Tensor], torch.Tensor | None]
) -> None:
    """Replace (or, when ``fn`` returns None, delete) one tensor of a single-file checkpoint."""
    path = model_dir / "model.safetensors"
    tensors = load_file(str(path))
    new = fn(tensors[name])
    if new is None:
        del tensors[name]
    else:
        tensors[name] = new
    save_file(tensors, str(path))


def load_reference(model_dir: Path) -> Any:
    from transformers import AutoModelForCausalLM  # noqa: PLC0415 (heavy, reference only)

    model = AutoModelForCausalLM.from_pretrained(
        str(model_dir), dtype=torch.float32, attn_implementation="eager"
    )
    return model.eval()


def reference_logits(model: Any, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].float()


def run_prefill_then_decode(
    runner: ModelRunner, ids: list[int], prompt_len: int, alloc: BlockAllocator
) -> list[torch.Tensor]:
    """Logits of positions prompt_len-1 .. len(ids)-1: one prefill, then one decode per token."""
    table = alloc.grow([], prompt_len)
    out = [runner.execute([SeqChunk(ids[:prompt_len], 0, list(table))])[0]]
    for pos in range(prompt_len, len(ids)):
        alloc.grow(table, pos + 1)
        out.append(runner.execute([SeqChunk([ids[pos]], pos, list(table))])[0])
    return out
