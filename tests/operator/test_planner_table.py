"""Table tests of the sharding planner: expected plans and rejections with their reasons."""

from __future__ import annotations

from typing import Any

import pytest
from dsd_factory import A100, H100, H200, L40S, inventory, pool, spec

from deepseek_operator.api.status import PlanStatus
from deepseek_operator.planning import PlanningError, plan_deployment

pytestmark = pytest.mark.unit

R1 = "deepseek-ai/DeepSeek-R1"
V2_LITE = "deepseek-ai/DeepSeek-V2-Lite"
QWEN_7B = "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B"

# (id, model, pools, spec fields, expected (product, tensor, pipeline, expert, nodes, gpus))
CASES: list[tuple[str, str, list[Any], dict[str, Any], tuple[str, int, int, int, int, int]]] = [
    ("r1-fp8-h200-one-node-tp8", R1, [pool(H200, 2)], {}, ("NVIDIA-H200", 8, 1, 8, 1, 8)),
    ("r1-fp8-h100-two-nodes", R1, [pool(H100, 4)], {}, ("NVIDIA-H100-80GB-HBM3", 8, 2, 8, 2, 16)),
    (
        "r1-prefers-h200-over-two-h100",
        R1,
        [pool(H100, 4, "h100"), pool(H200, 1, "h200")],
        {},
        ("NVIDIA-H200", 8, 1, 8, 1, 8),
    ),
    (
        "v2-lite-bf16-one-a100",
        V2_LITE,
        [pool(A100, 2, "a"), pool(H100, 2, "h")],
        {},
        ("NVIDIA-A100-SXM4-80GB", 1, 1, 1, 1, 1),
    ),
    ("qwen-7b-one-l40s", QWEN_7B, [], {}, ("NVIDIA-L40S", 1, 1, 1, 1, 1)),
    (
        "qwen-7b-on-h100-when-asked",
        QWEN_7B,
        [],
        {"placement": {"gpu": {"products": ["H100"]}}},
        ("NVIDIA-H100-80GB-HBM3", 1, 1, 1, 1, 1),
    ),
    (
        "v2-236b-bf16-h200-tp4",
        "deepseek-ai/DeepSeek-V2",
        [pool(H200, 2)],
        {},
        ("NVIDIA-H200", 4, 1, 4, 1, 4),
    ),
    (
        "llama-70b-four-h100",
        "deepseek-ai/DeepSeek-R1-Distill-Llama-70B",
        [pool(H100, 1)],
        {},
        ("NVIDIA-H100-80GB-HBM3", 4, 1, 1, 1, 4),
    ),  # TP2 leaves 1.7 GiB of KV: too little
    (
        "qwen-32b-l40s-tp4",
        "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B",
        [pool(L40S, 2)],
        {},
        ("NVIDIA-L40S", 4, 1, 1, 1, 4),
    ),
    (
        "explicit-tensor-honoured",
        R1,
        [pool(H100, 4)],
        {"parallelism": {"tensor": 4}},
        ("NVIDIA-H100-80GB-HBM3", 4, 3, 4, 3, 12),
    ),
    (
        "explicit-pipeline-honoured",
        R1,
        [pool(H200, 2)],
        {"parallelism": {"pipeline": 2}},
        ("NVIDIA-H200", 8, 2, 8, 2, 16),
    ),
    (
        "expert-parallel-off",
        R1,
        [pool(H200, 1)],
        {"parallelism": {"expert": 1}},
        ("NVIDIA-H200", 8, 1, 1, 1, 8),
    ),
    (
        "int4-r1-fits-one-h100-node",
        R1,
        [pool(H100, 2)],
        {"model": {"quantization": "int4"}},
        ("NVIDIA-H100-80GB-HBM3", 8, 1, 8, 1, 8),
    ),
    (
        "alias-name-resolves",
        "deepseek-ai/DeepSeek-V2-Lite-Chat",
        [pool(A100, 1)],
        {},
        ("NVIDIA-A100-SXM4-80GB", 1, 1, 1, 1, 1),
    ),
]


@pytest.mark.parametrize(
    ("model", "pools", "fields", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_expected_plans(
    model: str,
    pools: list[Any],
    fields: dict[str, Any],
    expected: tuple[str, int, int, int, int, int],
) -> None:
    plan = plan_deployment(spec(model, **fields), inventory(*pools))
    got = (
        plan.gpu_product,
        plan.tensor,
        plan.pipeline,
        plan.expert,
        plan.nodes_per_replica,
        plan.gpus_per_replica,
    )
    assert got == expected, "\n".join(plan.reasons)
    assert plan.reasons and plan.reasons[0].startswith(f"model {plan.model_name}")
    assert plan.max_tokens_in_cache >= plan.max_full_length_sequences * 256
    assert plan.node_selector == {"nvidia.com/gpu.product": plan.gpu_product}


# (id, model, pools, spec fields, field, regex of the message)
REJECTIONS: list[tuple[str, str, list[Any], dict[str, Any], str, str]] = [
    (
        "tensor-3-for-128-heads",
        R1,
        [],
        {"parallelism": {"tensor": 3}},
        "spec.parallelism.tensor",
        r"tensor 3 does not divide the 128 attention heads.*one of 1, 2, 4",
    ),
    (
        "tensor-3-for-gqa",
        QWEN_7B,
        [],
        {"parallelism": {"tensor": 3}},
        "spec.parallelism.tensor",
        r"28 attention heads .* 4 KV heads",
    ),
    (
        "unknown-product",
        R1,
        [],
        {"placement": {"gpu": {"products": ["B300"]}}},
        "spec.placement.gpu.products",
        r"matches placement.gpu.products \['B300'\].*NVIDIA-H200",
    ),
    (
        "no-pool-large-enough",
        R1,
        [pool(H100, 2)],
        {"model": {"quantization": "none"}},
        "spec.placement",
        r"weights need 1\.2 TiB \(bf16\).*2 nodes of 8×80 GiB.*would fit on 3 such nodes",
    ),
    (
        "too-many-gpus",
        R1,
        [pool(H100, 4)],
        {"placement": {"gpu": {"maxGpusPerReplica": 8}}},
        "spec.placement",
        r"maxGpusPerReplica 8",
    ),
    (
        "dense-model-expert",
        QWEN_7B,
        [],
        {"parallelism": {"expert": 2}},
        "spec.parallelism.expert",
        r"dense model without routed experts",
    ),
    (
        "expert-not-dividing",
        R1,
        [],
        {"parallelism": {"expert": 3}},
        "spec.parallelism.expert",
        r"does not divide the 256 routed experts",
    ),
    (
        "pipeline-over-layers",
        V2_LITE,
        [],
        {"parallelism": {"pipeline": 64}},
        "spec.parallelism.pipeline",
        r"exceeds the 27 layers",
    ),
    (
        "context-too-long",
        QWEN_7B,
        [],
        {"model": {"maxModelLen": 262144}},
        "spec.model.maxModelLen",
        r"exceeds the 131072 positions",
    ),
    ("unknown-model", "acme/Llama-9", [], {}, "spec.model", r"not in the built-in catalog"),
    (
        "min-memory",
        QWEN_7B,
        [pool(L40S, 2)],
        {"placement": {"gpu": {"minMemoryGiB": 80}}},
        "spec.placement",
        r"below placement.gpu.minMemoryGiB",
    ),
    (
        "node-selector",
        QWEN_7B,
        [pool(L40S, 2)],
        {"placement": {"nodeSelector": {"zone": "x"}}},
        "spec.placement",
        r"do not match placement.nodeSelector",
    ),
    (
        "tensor-beyond-node",
        R1,
        [pool(H200, 2)],
        {"parallelism": {"tensor": 16}},
        "spec.placement",
        r"tensor 16 × data 1 exceeds the 8 GPUs of a node.*To fit",
    ),
    ("no-gpu-nodes", QWEN_7B, [[]], {}, "spec.placement", r"no GPU nodes at all"),
]


@pytest.mark.parametrize(
    ("model", "pools", "fields", "field", "message"),
    [c[1:] for c in REJECTIONS],
    ids=[c[0] for c in REJECTIONS],
)
def test_rejections_say_why(
    model: str, pools: list[Any], fields: dict[str, Any], field: str, message: str
) -> None:
    with pytest.raises(PlanningError, match=message) as info:
        plan_deployment(spec(model, **fields), inventory(*pools))
    assert info.value.field == field


def test_plan_status_shape_matches_the_api() -> None:
    plan = plan_deployment(spec(R1), inventory(pool(H100, 4)))
    status = plan.to_status()
    assert PlanStatus.model_validate(status).to_k8s() == status
    assert status["gpuSummary"] == "2x8xH100-80GB-HBM3"
    assert status["layout"] == "8x2x8"
    assert status["gpusPerReplica"] == 16 and status["reasons"] == plan.reasons


def test_reasons_explain_each_choice() -> None:
    plan = plan_deployment(spec(R1), inventory(pool(H100, 4, "h"), pool(H200, 1, "x")))
    text = "\n".join(plan.reasons)
    assert "weights: fp8 (checkpoint format) = 627.8 GiB" in text
    assert "NVIDIA-H100-80GB-HBM3: fits as TP8×PP2 on 2 nodes (16 GPUs)" in text
    assert "chose NVIDIA-H200: fewest GPUs per replica" in text
    assert "expert 8: 256 routed experts" in text


def test_cordoned_and_tainted_nodes_are_skipped() -> None:
    nodes = pool(H200, 2)
    nodes[0]["spec"]["unschedulable"] = True
    nodes[1]["spec"]["taints"].append(
        {"key": "dedicated", "value": "training", "effect": "NoSchedule"}
    )
    with pytest.raises(PlanningError, match=r"cordoned or not Ready.*taint dedicated=training"):
        plan_deployment(spec(R1), inventory(nodes))
    tolerated = spec(
        R1,
        placement={
            "tolerations": [
                {
                    "key": "dedicated",
                    "operator": "Equal",
                    "value": "training",
                    "effect": "NoSchedule",
                }
            ]
        },
    )
    plan = plan_deployment(tolerated, inventory(nodes))
    assert plan.replica_capacity == 1


def test_custom_model_from_config_json() -> None:
    config = {
        "model_type": "qwen2",
        "num_hidden_layers": 24,
        "hidden_size": 896,
        "num_attention_heads": 14,
        "num_key_value_heads": 2,
        "intermediate_size": 4864,
        "vocab_size": 151936,
        "max_position_embeddings": 32768,
        "tie_word_embeddings": True,
    }
    s = spec("acme/tiny-qwen", model={"maxModelLen": 8192})
    plan = plan_deployment(s, inventory(pool(L40S, 1)), config)
    assert (plan.tensor, plan.gpus_per_replica) == (1, 1)
    assert plan.model_name == "acme/tiny-qwen"
    with pytest.raises(PlanningError, match="num_hidden_layers"):
        plan_deployment(s, inventory(pool(L40S, 1)), {"model_type": "qwen2"})
