"""What a backend hands the HTTP layer once the model is ready."""

from __future__ import annotations

from dataclasses import dataclass

from ..engine.api import AsyncEngine
from .tokenizer import ServerTokenizer


@dataclass(frozen=True, slots=True)
class LoadedModel:
    """A started engine and the tokenizer (with chat template) that goes with it."""

    engine: AsyncEngine
    tokenizer: ServerTokenizer
