"""GPU node pools of the local control plane: the ``e2e/pools.yaml`` schema and Node rendering.

Pure functions only (no cluster I/O). ``e2e.devcluster.cluster`` applies what
:func:`render_nodes` returns; later tests and benchmarks read pools through
:func:`load_pools` to know which products, counts and sizes the cluster has.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, PositiveInt

DEFAULT_POOLS_FILE = Path(__file__).resolve().parent.parent / "pools.yaml"

POOL_LABEL = "deepseek.ai/pool"
# Which multiple of the pool's base count a node belongs to (0 at scale 1): scaling down
# deletes whole copies with one label-selected request.
COPY_LABEL = "deepseek.ai/pool-copy"
GPU_RESOURCE = "nvidia.com/gpu"
GPU_TAINT_KEY = "nvidia.com/gpu"
KWOK_ANNOTATION = "kwok.x-k8s.io/node"


class GpuSpec(BaseModel):
    """The GPUs of one node, as GPU feature discovery labels them."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    product: str = Field(min_length=1)
    family: str = Field(min_length=1)
    count: PositiveInt
    memory_mib: PositiveInt = Field(alias="memoryMiB")


class Pool(BaseModel):
    """One pool of identical nodes."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    name_prefix: str = Field(alias="namePrefix", pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    count: PositiveInt
    instance_type: str = Field(alias="instanceType", min_length=1)
    zones: list[str] = Field(min_length=1)
    cpu: str
    memory: str
    pods: PositiveInt = 110
    gpu: GpuSpec | None = None

    def node_names(self, scale: int = 1) -> list[str]:
        """Names of this pool's nodes at the given scale."""
        return [f"{self.name_prefix}-{i}" for i in range(self.count * scale)]


class PoolSet(BaseModel):
    """All pools of the cluster (the whole ``pools.yaml``)."""

    model_config = ConfigDict(extra="forbid")

    region: str = "local-1"
    pools: list[Pool] = Field(min_length=1)

    def pool(self, name: str) -> Pool:
        """The pool called ``name``; ``KeyError`` if there is none."""
        for pool in self.pools:
            if pool.name == name:
                return pool
        raise KeyError(f"no pool named {name!r}; pools: {[p.name for p in self.pools]}")


def load_pools(path: Path | None = None) -> PoolSet:
    """Read and validate a pools file (default: ``e2e/pools.yaml``)."""
    source = path or DEFAULT_POOLS_FILE
    data = yaml.safe_load(source.read_text())
    pool_set = PoolSet.model_validate(data)
    prefixes = [p.name_prefix for p in pool_set.pools]
    names = [p.name for p in pool_set.pools]
    if len(set(prefixes)) != len(prefixes) or len(set(names)) != len(names):
        raise ValueError(f"{source}: pool names and namePrefixes must be unique")
    return pool_set


def _node(pool_set: PoolSet, pool: Pool, index: int) -> dict[str, Any]:
    name = f"{pool.name_prefix}-{index}"
    labels = {
        "type": "kwok",
        "kubernetes.io/arch": "amd64",
        "kubernetes.io/os": "linux",
        "kubernetes.io/hostname": name,
        "node.kubernetes.io/instance-type": pool.instance_type,
        "topology.kubernetes.io/region": pool_set.region,
        "topology.kubernetes.io/zone": pool.zones[index % len(pool.zones)],
        POOL_LABEL: pool.name,
        COPY_LABEL: str(index // pool.count),
    }
    resources = {"cpu": pool.cpu, "memory": pool.memory, "pods": str(pool.pods)}
    taints: list[dict[str, str]] = []
    if pool.gpu is not None:
        labels |= {
            "nvidia.com/gpu.present": "true",
            "nvidia.com/gpu.product": pool.gpu.product,
            "nvidia.com/gpu.family": pool.gpu.family,
            "nvidia.com/gpu.count": str(pool.gpu.count),
            "nvidia.com/gpu.memory": str(pool.gpu.memory_mib),
        }
        resources[GPU_RESOURCE] = str(pool.gpu.count)
        taints.append({"key": GPU_TAINT_KEY, "value": "present", "effect": "NoSchedule"})
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": labels,
            "annotations": {KWOK_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
        },
        "spec": {"taints": taints} if taints else {},
        "status": {
            "capacity": dict(resources),
            "allocatable": dict(resources),
        },
    }


def render_nodes(pool_set: PoolSet, scale: int = 1) -> list[dict[str, Any]]:
    """Node manifests for every pool, ``count × scale`` nodes each."""
    if scale < 1:
        raise ValueError(f"scale must be >= 1, got {scale}")
    return [_node(pool_set, pool, i) for pool in pool_set.pools for i in range(pool.count * scale)]
