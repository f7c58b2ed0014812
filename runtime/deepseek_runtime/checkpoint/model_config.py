"""Pick and validate the architecture config of a checkpoint by its ``model_type``.

Called by the model runner, ``make_tiny`` and the backends. DeepSeek V2/V3 (MLA + MoE)
parse into :class:`~deepseek_runtime.checkpoint.config.DeepseekConfig`; the R1 distills'
Qwen2 and Llama parse into :class:`~deepseek_runtime.checkpoint.dense_config.DenseConfig`.
An unknown ``model_type`` is a :class:`ConfigError` listing what the engine serves.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from deepseek_runtime.checkpoint.config import SUPPORTED_ARCHITECTURES, ConfigError, DeepseekConfig
from deepseek_runtime.checkpoint.dense_config import DENSE_ARCHITECTURES, DenseConfig

ModelConfig = DeepseekConfig | DenseConfig

# model_type -> Hugging Face architecture class name, for every model the engine serves
MODEL_ARCHITECTURES: dict[str, str] = {**SUPPORTED_ARCHITECTURES, **DENSE_ARCHITECTURES}


def parse_model_config(data: dict[str, Any], source: str = "config.json") -> ModelConfig:
    """Validate a config dict of any served architecture; errors name the field."""
    model_type = data.get("model_type")
    if model_type not in MODEL_ARCHITECTURES:
        raise ConfigError(
            f"{source}: model_type {model_type!r} is not supported by the native engine "
            f"(supported: {', '.join(MODEL_ARCHITECTURES)})"
        )
    cls: type[DeepseekConfig] | type[DenseConfig] = (
        DenseConfig if model_type in DENSE_ARCHITECTURES else DeepseekConfig
    )
    try:
        config = cls.model_validate(data)
        config.rope()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'config'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"{source}: {problems}") from None
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    return config


def load_model_config(
    model_dir: str | Path, overrides: dict[str, Any] | None = None
) -> ModelConfig:
    """Read and validate ``model_dir/config.json`` (``overrides`` win over file values)."""
    path = Path(model_dir) / "config.json"
    if not path.is_file():
        raise ConfigError(f"{path}: not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: invalid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object")
    data.update(overrides or {})
    return parse_model_config(data, str(path))
