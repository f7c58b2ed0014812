"""The CRDs the operator needs on the local cluster (the DSD CRD and kopf's peering)."""

from __future__ import annotations

from e2e.operator_harness import ROOT, Kube, install_crds


def install_operator_crds(kube: Kube) -> None:
    install_crds(kube)
    kube(
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager=e2e",
        "-f",
        str(ROOT / "manifests/base/kopf-peering-crds.yaml"),
    )
    kube("wait", "--for=condition=Established", "crd/kopfpeerings.kopf.dev", "--timeout=60s")
