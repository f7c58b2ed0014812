"""Model catalog, memory model and GPU inventory: exact numbers."""

from __future__ import annotations

import pytest
from dsd_factory import H100, pool

from deepseek_operator.planning import catalog_names, inventory_from_nodes, lookup
from deepseek_operator.planning.architecture import architecture_from_config
from deepseek_operator.planning.catalog import catalog_config
from deepseek_operator.planning.inventory import product_matches, product_tier
from deepseek_operator.planning.memory import (
    GIB,
    Sharding,
    checkpoint_bytes,
    kv_bytes_per_token,
    weight_bytes_per_gpu,
)

pytestmark = pytest.mark.unit

# name -> (published parameters in billions, layers, heads, kv heads, routed experts)
PUBLISHED = {
    "deepseek-ai/DeepSeek-V3": (671, 61, 128, 128, 256),
    "deepseek-ai/DeepSeek-R1": (671, 61, 128, 128, 256),
    "deepseek-ai/DeepSeek-V2": (236, 60, 128, 128, 160),
    "deepseek-ai/DeepSeek-V2-Lite": (15.7, 27, 16, 16, 64),
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B": (1.78, 28, 12, 2, 0),
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B": (7.62, 28, 28, 4, 0),
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-14B": (14.8, 48, 40, 8, 0),
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B": (32.8, 64, 40, 8, 0),
    "deepseek-ai/DeepSeek-R1-Distill-Llama-8B": (8.03, 32, 32, 8, 0),
    "deepseek-ai/DeepSeek-R1-Distill-Llama-70B": (70.6, 80, 64, 8, 0),
}


def test_catalog_covers_the_family() -> None:
    assert sorted(catalog_names()) == sorted(PUBLISHED)


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_architecture_numbers_match_the_published_size(name: str) -> None:
    params, layers, heads, kv_heads, experts = PUBLISHED[name]
    arch = lookup(name)
    assert arch is not None
    assert (arch.num_layers, arch.num_heads, arch.num_kv_heads, arch.n_routed_experts) == (
        layers,
        heads,
        kv_heads,
        experts,
    )
    # Counting parameters from config.json alone lands within 1 % of the published size.
    computed = architecture_from_config(catalog_config(name)).total_params
    assert computed == pytest.approx(params * 1e9, rel=0.01)


def test_lookup_by_alias_uri_and_case() -> None:
    for text in (
        "hf://deepseek-ai/DeepSeek-R1",
        "deepseek-r1-0528",
        "DeepSeek-V2.5",
        "s3://bucket/models/DeepSeek-V2-Lite-Chat/",
    ):
        assert lookup(text) is not None, text
    assert lookup("acme/unknown", None) is None


def test_mla_kv_cache_is_the_latent_and_not_sharded() -> None:
    r1 = lookup("deepseek-ai/DeepSeek-R1")
    assert r1 is not None and r1.attention == "mla" and r1.native_dtype == "fp8"
    # (kv_lora_rank 512 + rope 64) x 61 layers x 2 bytes, the same on every TP rank
    assert kv_bytes_per_token(r1, Sharding(1, 1, 1), 2) == 576 * 61 * 2 == 70272
    assert kv_bytes_per_token(r1, Sharding(8, 1, 8), 2) == 70272
    assert kv_bytes_per_token(r1, Sharding(8, 2, 8), 1) == 576 * 31


def test_gqa_kv_cache_splits_heads_then_replicates() -> None:
    qwen = lookup("deepseek-ai/DeepSeek-R1-Distill-Qwen-7B")
    assert qwen is not None and qwen.attention == "gqa"
    assert kv_bytes_per_token(qwen, Sharding(1, 1, 1), 2) == 2 * 4 * 128 * 28 * 2 == 57344
    assert kv_bytes_per_token(qwen, Sharding(2, 1, 1), 2) == 2 * 2 * 128 * 28 * 2
    assert kv_bytes_per_token(qwen, Sharding(4, 1, 1), 2) == 2 * 1 * 128 * 28 * 2
    assert kv_bytes_per_token(qwen, Sharding(7, 1, 1), 2) == 2 * 1 * 128 * 28 * 2


def test_weight_bytes_by_format() -> None:
    r1 = lookup("deepseek-ai/DeepSeek-R1")
    assert r1 is not None
    fp8, bf16, int4 = (checkpoint_bytes(r1, f) for f in ("fp8", "bf16", "int4"))
    # FP8 blocks, with embeddings, routers and MLA kv_b_proj (1.1B) in bf16 as the runtime
    assert fp8 / GIB == pytest.approx(627.8, abs=0.1)
    assert bf16 / 1024**4 == pytest.approx(1.22, abs=0.01)
    assert int4 < fp8 * 0.6
    per_gpu = weight_bytes_per_gpu(r1, "fp8", Sharding(8, 1, 8))
    assert per_gpu == pytest.approx(fp8 / 8, rel=0.001)
    # two stages: half the layers (31 of 61, rounded up) and one of embedding / LM head
    two_stage = weight_bytes_per_gpu(r1, "fp8", Sharding(8, 2, 8))
    assert fp8 / 16 < two_stage < fp8 / 16 * 1.02


def test_inventory_from_nodes() -> None:
    nodes = pool(H100, 2)
    nodes.append(
        {"metadata": {"name": "cpu-0", "labels": {}}, "status": {"allocatable": {"cpu": "32"}}}
    )
    nodes.append(
        {
            "metadata": {"name": "odd", "labels": {}},
            "status": {"allocatable": {"nvidia.com/gpu": "4"}},
        }
    )
    nodes.append(
        {
            "metadata": {
                "name": "nolabel-mem",
                "labels": {"nvidia.com/gpu.product": "NVIDIA-L40S"},
            },
            "status": {"capacity": {"nvidia.com/gpu": 4}},
        }
    )
    nodes.append(
        {
            "metadata": {
                "name": "down",
                "labels": {
                    "nvidia.com/gpu.product": "NVIDIA-H200",
                    "nvidia.com/gpu.memory": "143771",
                },
            },
            "status": {
                "allocatable": {"nvidia.com/gpu": "8"},
                "conditions": [{"type": "Ready", "status": "False"}],
            },
        }
    )
    inv = inventory_from_nodes(nodes)
    assert [n.name for n in inv.nodes] == ["down", "n-0", "n-1", "nolabel-mem"]
    assert inv.notes == ("node odd: 4 GPUs but no nvidia.com/gpu.product label; skipped",)
    by_name = {n.name: n for n in inv.nodes}
    assert by_name["nolabel-mem"].memory_mib == 46068  # from the known-products table
    assert not by_name["down"].schedulable
    assert by_name["n-0"].taints[0].key == "nvidia.com/gpu"
    pools = inv.pools()
    assert [(p.product, len(p.nodes)) for p in pools] == [
        ("NVIDIA-H200", 1),
        ("NVIDIA-H100-80GB-HBM3", 2),
        ("NVIDIA-L40S", 1),
    ]
    assert pools[1].describe() == "2 nodes of 8×80 GiB NVIDIA-H100-80GB-HBM3"


@pytest.mark.parametrize(
    ("wanted", "product", "match"),
    [
        ("H100", "NVIDIA-H100-80GB-HBM3", True),
        ("h100", "NVIDIA-H100-80GB-HBM3", True),
        ("A100-80GB", "NVIDIA-A100-SXM4-80GB", True),
        ("A100-40GB", "NVIDIA-A100-SXM4-80GB", False),
        ("H100", "NVIDIA-H200", False),
        ("NVIDIA-L40S", "NVIDIA-L40S", True),
        ("L40", "NVIDIA-L40S", False),
    ],
)
def test_product_matching(wanted: str, product: str, match: bool) -> None:
    assert product_matches(wanted, product) is match


def test_product_tiers_order_families() -> None:
    ranks = [
        product_tier(p)
        for p in (
            "NVIDIA-L40S",
            "NVIDIA-A100-SXM4-80GB",
            "NVIDIA-H100-80GB-HBM3",
            "NVIDIA-H200",
            "Acme-X1",
        )
    ]
    assert ranks == sorted(ranks)
