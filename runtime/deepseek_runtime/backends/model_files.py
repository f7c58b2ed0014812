"""What backends read from a checkpoint directory besides the weights.

EOS ids and ``tokenizer.json`` for the native engine, ``max_position_embeddings`` for the
Triton proxy's length limit. Small JSON reads at load time, never on a request's path.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


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


def max_positions(model_dir: Path) -> int | None:
    """``max_position_embeddings`` from ``config.json`` (used when nothing else says)."""
    path = model_dir / "config.json"
    if not path.is_file():
        return None
    value = json.loads(path.read_text(encoding="utf-8")).get("max_position_embeddings")
    return int(value) if isinstance(value, int) else None
