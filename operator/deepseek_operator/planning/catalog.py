"""Built-in catalog of DeepSeek models: their ``config.json`` shape and published size.

Entries hold the architecture fields of each checkpoint's ``config.json`` on the Hugging
Face Hub (layers, hidden size, heads, KV heads, MLA ranks, experts) and the published
parameter count. :func:`lookup` resolves a served model name, a catalog alias or a source
URI (``hf://deepseek-ai/DeepSeek-R1``) to a :class:`ModelArchitecture`.

Pure data; called by the planner.
"""

from __future__ import annotations

from typing import Any, Final

from deepseek_operator.planning.architecture import ModelArchitecture, architecture_from_config

_FP8: Final = {"quant_method": "fp8", "fmt": "e4m3", "weight_block_size": [128, 128]}

_V3: Final[dict[str, Any]] = {
    "model_type": "deepseek_v3",
    "num_hidden_layers": 61,
    "hidden_size": 7168,
    "num_attention_heads": 128,
    "num_key_value_heads": 128,
    "intermediate_size": 18432,
    "moe_intermediate_size": 2048,
    "n_routed_experts": 256,
    "n_shared_experts": 1,
    "num_experts_per_tok": 8,
    "first_k_dense_replace": 3,
    "moe_layer_freq": 1,
    "kv_lora_rank": 512,
    "q_lora_rank": 1536,
    "qk_rope_head_dim": 64,
    "qk_nope_head_dim": 128,
    "v_head_dim": 128,
    "vocab_size": 129280,
    "max_position_embeddings": 163840,
    "tie_word_embeddings": False,
    "quantization_config": _FP8,
}
_V2: Final[dict[str, Any]] = {
    "model_type": "deepseek_v2",
    "num_hidden_layers": 60,
    "hidden_size": 5120,
    "num_attention_heads": 128,
    "num_key_value_heads": 128,
    "intermediate_size": 12288,
    "moe_intermediate_size": 1536,
    "n_routed_experts": 160,
    "n_shared_experts": 2,
    "num_experts_per_tok": 6,
    "first_k_dense_replace": 1,
    "moe_layer_freq": 1,
    "kv_lora_rank": 512,
    "q_lora_rank": 1536,
    "qk_rope_head_dim": 64,
    "qk_nope_head_dim": 128,
    "v_head_dim": 128,
    "vocab_size": 102400,
    "max_position_embeddings": 163840,
    "tie_word_embeddings": False,
}
_V2_LITE: Final[dict[str, Any]] = {
    "model_type": "deepseek_v2",
    "num_hidden_layers": 27,
    "hidden_size": 2048,
    "num_attention_heads": 16,
    "num_key_value_heads": 16,
    "intermediate_size": 10944,
    "moe_intermediate_size": 1408,
    "n_routed_experts": 64,
    "n_shared_experts": 2,
    "num_experts_per_tok": 6,
    "first_k_dense_replace": 1,
    "moe_layer_freq": 1,
    "kv_lora_rank": 512,
    "q_lora_rank": None,
    "qk_rope_head_dim": 64,
    "qk_nope_head_dim": 128,
    "v_head_dim": 128,
    "vocab_size": 102400,
    "max_position_embeddings": 163840,
    "tie_word_embeddings": False,
}


def _qwen2(
    layers: int, hidden: int, heads: int, kv: int, *, inter: int, vocab: int
) -> dict[str, Any]:
    return {
        "model_type": "qwen2",
        "num_hidden_layers": layers,
        "hidden_size": hidden,
        "num_attention_heads": heads,
        "num_key_value_heads": kv,
        "intermediate_size": inter,
        "vocab_size": vocab,
        "max_position_embeddings": 131072,
        "tie_word_embeddings": False,
    }


def _llama(layers: int, hidden: int, heads: int, inter: int) -> dict[str, Any]:
    return {
        "model_type": "llama",
        "num_hidden_layers": layers,
        "hidden_size": hidden,
        "num_attention_heads": heads,
        "num_key_value_heads": 8,
        "intermediate_size": inter,
        "vocab_size": 128256,
        "max_position_embeddings": 131072,
        "tie_word_embeddings": False,
    }


# name -> (config, published parameter count, aliases)
_ENTRIES: Final[dict[str, tuple[dict[str, Any], int, tuple[str, ...]]]] = {
    "deepseek-ai/DeepSeek-V3": (_V3, 671_000_000_000, ("DeepSeek-V3-0324", "DeepSeek-V3-Base")),
    "deepseek-ai/DeepSeek-R1": (_V3, 671_000_000_000, ("DeepSeek-R1-0528", "DeepSeek-R1-Zero")),
    "deepseek-ai/DeepSeek-V2": (_V2, 236_000_000_000, ("DeepSeek-V2-Chat", "DeepSeek-V2.5")),
    "deepseek-ai/DeepSeek-V2-Lite": (_V2_LITE, 15_700_000_000, ("DeepSeek-V2-Lite-Chat",)),
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B": (
        _qwen2(28, 1536, 12, 2, inter=8960, vocab=151936),
        1_780_000_000,
        (),
    ),
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B": (
        _qwen2(28, 3584, 28, 4, inter=18944, vocab=152064),
        7_620_000_000,
        (),
    ),
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-14B": (
        _qwen2(48, 5120, 40, 8, inter=13824, vocab=152064),
        14_800_000_000,
        (),
    ),
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B": (
        _qwen2(64, 5120, 40, 8, inter=27648, vocab=152064),
        32_800_000_000,
        (),
    ),
    "deepseek-ai/DeepSeek-R1-Distill-Llama-8B": (_llama(32, 4096, 32, 14336), 8_030_000_000, ()),
    "deepseek-ai/DeepSeek-R1-Distill-Llama-70B": (_llama(80, 8192, 64, 28672), 70_600_000_000, ()),
}


def _key(name: str) -> str:
    """Normalise a name or URI to its last path component, lower-case."""
    text = name.strip().split("://", 1)[-1].rstrip("/")
    return text.rsplit("/", 1)[-1].lower()


_INDEX: Final[dict[str, str]] = {
    _key(alias): name for name, (_, _, aliases) in _ENTRIES.items() for alias in (name, *aliases)
}


def catalog_names() -> list[str]:
    """Names of the built-in models, in catalog order."""
    return list(_ENTRIES)


def catalog_config(name: str) -> dict[str, Any]:
    """The stored ``config.json`` fields of a built-in model (a copy)."""
    return dict(_ENTRIES[name][0])


def lookup(*names: str | None) -> ModelArchitecture | None:
    """Return the architecture of the first name (or URI) found in the catalog, else None."""
    for candidate in names:
        if not candidate:
            continue
        canonical = _INDEX.get(_key(candidate))
        if canonical is not None:
            config, params, _ = _ENTRIES[canonical]
            return architecture_from_config(config, name=canonical, stated_params=params)
    return None


def chat_parsers(*names: str | None) -> tuple[str | None, str | None]:
    """``(reasoning parser, tool-call parser)`` for the first catalogued name (or URI).

    DeepSeek-R1 and every R1 distill think in ``<think>…</think>``: the ``deepseek_r1``
    reasoning parser moves that into ``reasoning_content``. DeepSeek-V3 and R1 (both
    ``deepseek_v3``) emit DeepSeek-V3's tool-call tokens: the ``deepseek_v3`` parser. Models
    outside the catalog get neither (set them with ``spec.engine.args`` / ``env``).
    """
    for candidate in names:
        canonical = _INDEX.get(_key(candidate)) if candidate else None
        if canonical is not None:
            config = _ENTRIES[canonical][0]
            reasoning = "deepseek_r1" if "DeepSeek-R1" in canonical else None
            tools = "deepseek_v3" if config["model_type"] == "deepseek_v3" else None
            return reasoning, tools
    return None, None
