"""The model shape the CPU benchmarks share (``engine_cpu.py``, ``server_load.py``).

Big enough to matter on CPU: hidden 512, 8 layers, 16 routed + 2 shared experts, MLA with
q_lora; a decode step takes tens of milliseconds, closer to a real model's step on a GPU
than make-tiny's defaults. Passed to ``make_tiny_checkpoint`` as config overrides.
"""

from __future__ import annotations

from typing import Any

BENCH_MODEL: dict[str, Any] = {
    "hidden_size": 512,
    "num_hidden_layers": 8,
    "intermediate_size": 1408,
    "moe_intermediate_size": 256,
    "n_routed_experts": 16,
    "n_shared_experts": 2,
    "num_experts_per_tok": 4,
    "n_group": 4,
    "topk_group": 2,
    "first_k_dense_replace": 1,
    "num_attention_heads": 8,
    "num_key_value_heads": 8,
    "q_lora_rank": 192,
    "kv_lora_rank": 128,
    "qk_nope_head_dim": 32,
    "qk_rope_head_dim": 16,
    "v_head_dim": 32,
    "vocab_size": 512,
}

# The R1-Distill-Qwen shape scaled down the same way: GQA (8 query heads over 2 KV heads,
# like the 1.5B distill's 12 over 2), q/k/v biases, SwiGLU; no experts.
BENCH_QWEN2: dict[str, Any] = {
    "hidden_size": 512,
    "num_hidden_layers": 8,
    "intermediate_size": 1408,
    "num_attention_heads": 8,
    "num_key_value_heads": 2,
    "vocab_size": 512,
}

# make-tiny arch -> config overrides, for ``--arch`` of the CPU benchmarks
BENCH_MODELS: dict[str, dict[str, Any]] = {
    "v3": BENCH_MODEL,
    "qwen2": BENCH_QWEN2,
    "llama": {**BENCH_QWEN2, "head_dim": 64},
}
