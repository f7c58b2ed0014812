"""Small builders of DeepSeekDeployment specs and node inventories for operator unit tests."""

from __future__ import annotations

from typing import Any

from deepseek_operator.api import DeepSeekDeployment, DeepSeekDeploymentSpec
from deepseek_operator.planning import GpuInventory, inventory_from_nodes
from deepseek_operator.planning.examples import example_nodes, gpu_node

H100 = ("NVIDIA-H100-80GB-HBM3", 81559, 8)
H200 = ("NVIDIA-H200", 143771, 8)
A100 = ("NVIDIA-A100-SXM4-80GB", 81920, 8)
L40S = ("NVIDIA-L40S", 46068, 4)


def spec(model_name: str = "deepseek-ai/DeepSeek-R1", **fields: Any) -> DeepSeekDeploymentSpec:
    """A spec for ``model_name`` from the Hub, with extra top-level ``fields`` (camelCase);
    ``model={...}`` adds fields to ``spec.model``."""
    model_fields = fields.pop("model", {})
    body = {
        "model": {"name": model_name, "source": {"uri": f"hf://{model_name}"}, **model_fields},
        **fields,
    }
    return DeepSeekDeploymentSpec.model_validate(body)


def dsd(name: str = "r1", namespace: str = "serving", **fields: Any) -> DeepSeekDeployment:
    """A DeepSeekDeployment object with a fixed uid."""
    s = spec(**fields)
    return DeepSeekDeployment.model_validate(
        {
            "apiVersion": "deepseek.ai/v1alpha1",
            "kind": "DeepSeekDeployment",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "generation": 1,
                "uid": "00000000-0000-4000-8000-000000000001",
            },
            "spec": s.to_k8s(),
        }
    )


def pool(kind: tuple[str, int, int], count: int, prefix: str = "n") -> list[dict[str, Any]]:
    """``count`` GPU Node dicts of one product."""
    product, mib, gpus = kind
    return [gpu_node(f"{prefix}-{i}", product, mib, gpus) for i in range(count)]


def inventory(*pools: list[dict[str, Any]]) -> GpuInventory:
    """Inventory of the given pools (the example inventory when none)."""
    nodes = [n for p in pools for n in p] if pools else example_nodes()
    return inventory_from_nodes(nodes)
