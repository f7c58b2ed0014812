"""Third-party CRDs for the local control plane, read from the Go modules that ship them.

Each entry names a Go module pinned in ``e2e/toolchain/versions.env`` and the CRD files
inside it. ``go mod download -json`` puts the module in Go's module cache (offline once
``make toolchain`` has fetched it) and reports its directory; nothing is copied into the repo.
Called by ``e2e.devcluster.cluster`` on ``up``.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from e2e.devcluster.toolchain import TOOLCHAIN_DIR, read_versions


@dataclass(frozen=True)
class CrdSource:
    """CRD files shipped inside one Go module."""

    module: str
    version_key: str
    files: tuple[str, ...]
    crd_names: tuple[str, ...]  # CRDs that must exist afterwards (checked on reuse)


SOURCES: tuple[CrdSource, ...] = (
    CrdSource(
        "istio.io/api",
        "ISTIO_API_VERSION",
        ("kubernetes/customresourcedefinitions.gen.yaml",),
        ("virtualservices.networking.istio.io", "destinationrules.networking.istio.io"),
    ),
    CrdSource(
        "github.com/prometheus-operator/prometheus-operator",
        "PROMETHEUS_OPERATOR_VERSION",
        tuple(
            f"example/prometheus-operator-crd/monitoring.coreos.com_{k}.yaml"
            for k in ("servicemonitors", "podmonitors", "prometheusrules")
        ),
        ("servicemonitors.monitoring.coreos.com", "prometheusrules.monitoring.coreos.com"),
    ),
    CrdSource(
        "sigs.k8s.io/lws",
        "LWS_VERSION",
        ("config/crd/bases/leaderworkerset.x-k8s.io_leaderworkersets.yaml",),
        ("leaderworkersets.leaderworkerset.x-k8s.io",),
    ),
    CrdSource(
        "github.com/kedacore/keda/v2",
        "KEDA_VERSION",
        tuple(
            f"config/crd/bases/keda.sh_{k}.yaml"
            for k in (
                "scaledobjects",
                "scaledjobs",
                "triggerauthentications",
                "clustertriggerauthentications",
            )
        ),
        ("scaledobjects.keda.sh",),
    ),
    CrdSource(
        "sigs.k8s.io/gateway-api",
        "GATEWAY_API_VERSION",
        tuple(
            f"config/crd/standard/gateway.networking.k8s.io_{k}.yaml"
            for k in ("gatewayclasses", "gateways", "httproutes", "grpcroutes", "referencegrants")
        ),
        ("gateways.gateway.networking.k8s.io", "httproutes.gateway.networking.k8s.io"),
    ),
)


def required_crd_names() -> list[str]:
    """Names of the CRDs every ``up`` guarantees."""
    return [name for src in SOURCES for name in src.crd_names]


def module_dir(module: str, version: str) -> Path:
    """Directory of ``module@version`` in Go's module cache, downloading it if needed."""
    env = dict(os.environ, GOFLAGS="-mod=mod", GO111MODULE="on")
    proc = subprocess.run(
        ["go", "mod", "download", "-json", f"{module}@{version}"],
        cwd=TOOLCHAIN_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    info = json.loads(proc.stdout or "{}")
    if proc.returncode != 0 or "Dir" not in info:
        detail = info.get("Error") or proc.stderr.strip()
        raise RuntimeError(f"go mod download {module}@{version} failed: {detail}")
    return Path(info["Dir"])


def crd_files() -> list[Path]:
    """Absolute paths of every CRD file to install, in install order."""
    versions = read_versions()
    files: list[Path] = []
    for src in SOURCES:
        root = module_dir(src.module, versions[src.version_key])
        for rel in src.files:
            path = root / rel
            if not path.is_file():
                raise RuntimeError(f"{src.module}@{versions[src.version_key]} has no {rel}")
            files.append(path)
    return files
