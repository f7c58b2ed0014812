"""Builds an :class:`LLMEngine` from a Hugging Face checkpoint directory.

Called by ``NativeAsyncEngine.from_model_dir`` and by the benchmark. Loads the model
runner (``deepseek_runtime.model.runner``), the tokenizer (``tokenizer.json``) and the
EOS token ids (``config.json`` / ``generation_config.json``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypedDict

import torch

from deepseek_runtime.engine.config import EngineConfig
from deepseek_runtime.engine.llm_engine import LLMEngine
from deepseek_runtime.engine.stages import ScheduledChunk

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class RunnerAdapter:
    """Presents ``model.runner.ModelRunner`` as the engine's ``ModelExecutor``."""

    def __init__(self, runner: Any) -> None:
        from deepseek_runtime.model.runner import SeqChunk  # noqa: PLC0415

        self.runner = runner
        self._chunk = SeqChunk

    @property
    def block_size(self) -> int:
        return int(self.runner.block_size)

    @property
    def num_blocks(self) -> int:
        return int(self.runner.num_blocks)

    @property
    def vocab_size(self) -> int:
        return int(self.runner.config.vocab_size)

    def execute(self, chunks: Sequence[ScheduledChunk]) -> torch.Tensor:
        make = self._chunk
        out: torch.Tensor = self.runner.execute(
            [make(c.token_ids, c.start_pos, c.block_table) for c in chunks]
        )
        return out


def read_eos_token_ids(model_dir: Path) -> list[int]:
    """EOS ids from ``generation_config.json`` (preferred) or ``config.json``."""
    for name in ("generation_config.json", "config.json"):
        path = model_dir / name
        if not path.is_file():
            continue
        value = json.loads(path.read_text()).get("eos_token_id")
        if value is None:
            continue
        return [int(v) for v in value] if isinstance(value, list) else [int(value)]
    return []


def load_tokenizer(model_dir: Path) -> Any | None:
    """``tokenizers.Tokenizer`` from ``tokenizer.json``, or None when there is none."""
    path = model_dir / "tokenizer.json"
    if not path.is_file():
        return None
    from tokenizers import Tokenizer  # noqa: PLC0415

    return Tokenizer.from_file(str(path))


class EngineLoadOptions(TypedDict, total=False):
    """The keyword options of :func:`build_engine` (which holds their defaults)."""

    dtype: str
    device: str
    max_model_len: int | None
    max_num_seqs: int
    max_num_batched_tokens: int
    block_size: int
    num_blocks: int | None
    kv_cache_memory_bytes: int | None
    enable_prefix_caching: bool
    max_waiting: int
    seed: int | None


def build_engine(
    model_dir: str | Path,
    *,
    dtype: str = "float32",
    device: str = "cpu",
    max_model_len: int | None = None,
    max_num_seqs: int = 256,
    max_num_batched_tokens: int = 2048,
    block_size: int = 16,
    num_blocks: int | None = None,
    kv_cache_memory_bytes: int | None = None,
    enable_prefix_caching: bool = True,
    max_waiting: int = 1024,
    seed: int | None = None,
) -> tuple[LLMEngine, Any | None]:
    """Load the checkpoint and return ``(engine, tokenizer)``.

    ``max_model_len`` defaults to the smaller of the model's
    ``max_position_embeddings`` and the KV cache capacity; a larger explicit value is
    a ValueError.
    """
    from deepseek_runtime.model.runner import ModelRunner  # noqa: PLC0415

    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
    path = Path(model_dir)
    runner = ModelRunner.from_pretrained(
        path,
        dtype=_DTYPES[dtype],
        device=device,
        block_size=block_size,
        num_blocks=num_blocks,
        kv_cache_memory_bytes=kv_cache_memory_bytes,
    )
    capacity = runner.num_blocks * runner.block_size
    limit = min(int(runner.config.max_position_embeddings), capacity)
    if max_model_len is None:
        max_model_len = limit
    elif max_model_len > limit:
        raise ValueError(
            f"max_model_len {max_model_len} exceeds what this model and KV cache allow ({limit})"
        )
    config = EngineConfig(
        max_model_len=max_model_len,
        max_num_seqs=max_num_seqs,
        max_num_batched_tokens=max_num_batched_tokens,
        enable_prefix_caching=enable_prefix_caching,
        max_waiting=max_waiting,
        seed=seed,
    )
    tokenizer = load_tokenizer(path)
    engine = LLMEngine(
        RunnerAdapter(runner),
        config,
        tokenizer=tokenizer,
        eos_token_ids=read_eos_token_ids(path),
    )
    return engine, tokenizer
