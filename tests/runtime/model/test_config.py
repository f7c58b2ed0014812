"""The config model reads the released DeepSeek configs (field values as published)."""

from __future__ import annotations

import math
from typing import Any

import pytest

from deepseek_runtime.checkpoint.model_config import parse_model_config

pytestmark = pytest.mark.unit

DEEPSEEK_V3: dict[str, Any] = {
    "architectures": ["DeepseekV3ForCausalLM"],
    "attention_bias": False,
    "aux_loss_alpha": 0.001,
    "bos_token_id": 0,
    "eos_token_id": 1,
    "ep_size": 1,
    "first_k_dense_replace": 3,
    "hidden_act": "silu",
    "hidden_size": 7168,
    "intermediate_size": 18432,
    "kv_lora_rank": 512,
    "max_position_embeddings": 163840,
    "model_type": "deepseek_v3",
    "moe_intermediate_size": 2048,
    "moe_layer_freq": 1,
    "n_group": 8,
    "n_routed_experts": 256,
    "n_shared_experts": 1,
    "norm_topk_prob": True,
    "num_attention_heads": 128,
    "num_experts_per_tok": 8,
    "num_hidden_layers": 61,
    "num_key_value_heads": 128,
    "num_nextn_predict_layers": 1,
    "q_lora_rank": 1536,
    "qk_nope_head_dim": 128,
    "qk_rope_head_dim": 64,
    "quantization_config": {
        "activation_scheme": "dynamic",
        "fmt": "e4m3",
        "quant_method": "fp8",
        "weight_block_size": [128, 128],
    },
    "rms_norm_eps": 1e-06,
    "rope_scaling": {
        "beta_fast": 32,
        "beta_slow": 1,
        "factor": 40,
        "mscale": 1.0,
        "mscale_all_dim": 1.0,
        "original_max_position_embeddings": 4096,
        "type": "yarn",
    },
    "rope_theta": 10000,
    "routed_scaling_factor": 2.5,
    "scoring_func": "sigmoid",
    "seq_aux": True,
    "tie_word_embeddings": False,
    "topk_group": 4,
    "topk_method": "noaux_tc",
    "torch_dtype": "bfloat16",
    "v_head_dim": 128,
    "vocab_size": 129280,
}

DEEPSEEK_V2_LITE: dict[str, Any] = {
    "architectures": ["DeepseekV2ForCausalLM"],
    "bos_token_id": 100000,
    "eos_token_id": 100001,
    "first_k_dense_replace": 1,
    "hidden_act": "silu",
    "hidden_size": 2048,
    "intermediate_size": 10944,
    "kv_lora_rank": 512,
    "max_position_embeddings": 163840,
    "model_type": "deepseek_v2",
    "moe_intermediate_size": 1408,
    "moe_layer_freq": 1,
    "n_group": 1,
    "n_routed_experts": 64,
    "n_shared_experts": 2,
    "norm_topk_prob": False,
    "num_attention_heads": 16,
    "num_experts_per_tok": 6,
    "num_hidden_layers": 27,
    "num_key_value_heads": 16,
    "q_lora_rank": None,
    "qk_nope_head_dim": 128,
    "qk_rope_head_dim": 64,
    "rms_norm_eps": 1e-06,
    "rope_scaling": {
        "beta_fast": 32,
        "beta_slow": 1,
        "factor": 40,
        "mscale": 0.707,
        "mscale_all_dim": 0.707,
        "original_max_position_embeddings": 4096,
        "type": "yarn",
    },
    "rope_theta": 10000,
    "routed_scaling_factor": 1.0,
    "scoring_func": "softmax",
    "topk_group": 1,
    "topk_method": "greedy",
    "v_head_dim": 128,
    "vocab_size": 102400,
}


def test_deepseek_v3_config() -> None:
    config = parse_model_config(DEEPSEEK_V3)
    assert config.latent_dim == 576 and config.qk_head_dim == 192
    assert config.routing_method == "noaux_tc" and config.scoring == "sigmoid"
    assert not config.is_moe_layer(2) and config.is_moe_layer(3) and config.is_moe_layer(60)
    assert config.fp8_block == (128, 128) and config.eos_token_ids == (1,)
    rope = config.rope()
    assert (
        rope.rope_type == "yarn"
        and rope.factor == 40
        and rope.original_max_position_embeddings == 4096
    )
    mscale = 0.1 * 1.0 * math.log(40) + 1
    assert config.softmax_scale() == pytest.approx(192**-0.5 * mscale * mscale)
    switched = parse_model_config({**DEEPSEEK_V3, "yarn_softmax_mscale": False})
    assert switched.softmax_scale() == pytest.approx(192**-0.5)
    assert config.router_group_mask == "-inf"


def test_deepseek_v2_lite_config() -> None:
    config = parse_model_config(DEEPSEEK_V2_LITE)
    assert config.q_lora_rank is None and config.routing_method == "greedy"
    assert config.scoring == "softmax" and config.rope_interleaved
    assert not config.is_moe_layer(0) and config.is_moe_layer(1)
    mscale = 0.1 * 0.707 * math.log(40) + 1
    assert config.softmax_scale() == pytest.approx(192**-0.5 * mscale * mscale)


def test_transformers_style_rope_parameters_are_read() -> None:
    data = {k: v for k, v in DEEPSEEK_V3.items() if k not in ("rope_scaling", "rope_theta")}
    data["rope_parameters"] = {"rope_type": "default", "rope_theta": 5e5}
    rope = parse_model_config(data).rope()
    assert rope.rope_type == "default" and rope.theta == 5e5
