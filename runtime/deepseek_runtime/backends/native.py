"""The ``native`` backend: our continuous-batching engine in this process.

Loads the checkpoint with ``NativeAsyncEngine.from_model_dir`` in a worker thread (so
``/health`` keeps answering while weights load), starts its step loop and pairs it with
the checkpoint's tokenizer and chat template. Called by ``backends.load_model``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ..server.config import ServerConfig
from ..server.state import LoadedModel
from ..server.tokenizer import ServerTokenizer


def resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import torch  # noqa: PLC0415

    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_dtype(dtype: str, device: str) -> str:
    if dtype != "auto":
        return dtype
    return "bfloat16" if device == "cuda" else "float32"


def engine_kwargs(config: ServerConfig, device: str) -> dict[str, Any]:
    """Our options as ``NativeAsyncEngine.from_model_dir`` keyword arguments."""
    return {
        "dtype": resolve_dtype(config.dtype, device),
        "device": device,
        "max_model_len": config.max_model_len,
        "max_num_seqs": config.max_num_seqs,
        "max_num_batched_tokens": config.max_num_batched_tokens,
        "block_size": config.block_size,
        "num_blocks": config.num_blocks,
        "kv_cache_memory_bytes": config.kv_cache_memory_bytes,
        "enable_prefix_caching": config.enable_prefix_caching,
        "max_waiting": config.max_waiting,
    }


async def load(config: ServerConfig) -> LoadedModel:
    from ..engine import NativeAsyncEngine  # noqa: PLC0415

    device = resolve_device(config.device)
    kwargs = engine_kwargs(config, device)
    engine = await asyncio.to_thread(NativeAsyncEngine.from_model_dir, config.model, **kwargs)
    tokenizer = ServerTokenizer.from_model_dir(config.model, tokenizer=engine.tokenizer)
    await engine.start()
    return LoadedModel(engine, tokenizer, config.model_name)
