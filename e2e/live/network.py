"""The live data plane's network: pod CIDRs on dedicated kwok nodes, pod IP -> loopback.

Pure functions (no I/O). Why this shape (docs/testing-live.md has the long form):

- kwok gives a pod an IP from its node's ``spec.podCIDR``. The live nodes get ``10.77.N.0/24``
  so pod IPs are ordinary private addresses: the apiserver rejects loopback addresses in
  Endpoints and EndpointSlices (``may not be in the loopback range``), so 127.0.0.0/8 pod IPs
  would leave every Service without endpoints.
- Nothing routes 10.77.0.0/16 on a CI machine, and adding addresses to an interface needs
  CAP_NET_ADMIN. The data plane therefore "routes" a pod IP to the loopback address with the
  same last three octets: ``10.77.3.9`` is served on ``127.77.3.9`` (all of 127.0.0.0/8 is
  local on Linux, no set-up needed). Prometheus applies the same rewrite to ``__address__``
  in one relabel rule, the load generator in :func:`loopback_address`.
- Live nodes carry their own label (not ``deepseek.ai/pool``, which the devcluster
  reconciler owns and prunes) and a ``deepseek.ai/live`` NoSchedule taint, so only
  DeepSeekDeployments that opt in (:func:`placement`) land on them and other e2e tests on
  the shared cluster never do.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Final

POD_NETWORK: Final = ipaddress.IPv4Network("10.77.0.0/16")
LOOPBACK_NETWORK: Final = ipaddress.IPv4Network("127.77.0.0/16")
LIVE_POOL_LABEL: Final = "deepseek.ai/live-pool"
LIVE_TAINT_KEY: Final = "deepseek.ai/live"
KWOK_ANNOTATION: Final = "kwok.x-k8s.io/node"
L40S: Final = {"product": "NVIDIA-L40S", "family": "ada-lovelace", "memory_mib": 46068}

# Prometheus relabel rule: scrape a pod IP of POD_NETWORK on its loopback twin.
ADDRESS_RELABEL: Final = {
    "source_labels": ["__address__"],
    "regex": r"10\.77\.(\d+)\.(\d+):(\d+)",
    "replacement": "127.77.$1.$2:$3",
    "target_label": "__address__",
    "action": "replace",
}


def loopback_address(pod_ip: str) -> str:
    """The loopback address that serves ``pod_ip`` (``10.77.a.b`` -> ``127.77.a.b``)."""
    ip = ipaddress.IPv4Address(pod_ip)
    if ip not in POD_NETWORK:
        raise ValueError(f"pod IP {pod_ip} is outside the live pod network {POD_NETWORK}")
    offset = int(ip) - int(POD_NETWORK.network_address)
    return str(ipaddress.IPv4Address(int(LOOPBACK_NETWORK.network_address) + offset))


def pod_cidr(subnet: int) -> str:
    """The ``/24`` of live subnet ``subnet`` (1-254)."""
    if not 1 <= subnet <= 254:
        raise ValueError(f"subnet must be 1..254, got {subnet}")
    return f"10.77.{subnet}.0/24"


def free_subnets(used_cidrs: set[str], count: int, start: int = 1) -> list[int]:
    """``count`` subnets whose CIDR no existing node uses, in order from ``start``."""
    out: list[int] = []
    for i in [*range(start, 255), *range(1, start)]:
        if pod_cidr(i) not in used_cidrs:
            out.append(i)
            if len(out) == count:
                return out
    raise RuntimeError(f"fewer than {count} free live subnets in {POD_NETWORK}")


def live_node(pool: str, index: int, subnet: int, gpus: int = 4) -> dict[str, Any]:
    """A kwok Node of live pool ``pool`` with ``gpus`` L40S GPUs and pod CIDR ``subnet``."""
    name = f"live-{pool}-{index}"
    resources = {"cpu": "64", "memory": "512Gi", "pods": "110", "nvidia.com/gpu": str(gpus)}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "type": "kwok",
                "kubernetes.io/arch": "amd64",
                "kubernetes.io/os": "linux",
                "kubernetes.io/hostname": name,
                "node.kubernetes.io/instance-type": "g6e.12xlarge",
                "topology.kubernetes.io/region": "local-1",
                "topology.kubernetes.io/zone": "local-1a",
                LIVE_POOL_LABEL: pool,
                "nvidia.com/gpu.present": "true",
                "nvidia.com/gpu.product": L40S["product"],
                "nvidia.com/gpu.family": L40S["family"],
                "nvidia.com/gpu.count": str(gpus),
                "nvidia.com/gpu.memory": str(L40S["memory_mib"]),
            },
            "annotations": {KWOK_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
        },
        "spec": {
            "podCIDR": pod_cidr(subnet),
            "podCIDRs": [pod_cidr(subnet)],
            "taints": [
                {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"},
                {"key": LIVE_TAINT_KEY, "value": pool, "effect": "NoSchedule"},
            ],
        },
        "status": {"capacity": dict(resources), "allocatable": dict(resources)},
    }


def placement(pool: str) -> dict[str, Any]:
    """``spec.placement`` that puts a DeepSeekDeployment's pods on live pool ``pool``."""
    return {
        "gpu": {"products": ["L40S"]},
        "nodeSelector": {LIVE_POOL_LABEL: pool},
        "tolerations": [
            {"key": LIVE_TAINT_KEY, "operator": "Equal", "value": pool, "effect": "NoSchedule"}
        ],
    }
