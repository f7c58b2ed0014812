"""What ``up`` puts into a running cluster: third-party CRDs and the simulated pool nodes.

Called by ``e2e.devcluster.cluster`` after kwokctl has started the control plane; each
step is idempotent, so a reused cluster is reconciled to the pools file and scale.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from urllib.parse import quote

from e2e.devcluster.crds import crd_files, required_crd_names
from e2e.devcluster.kube import kubectl, kubectl_json
from e2e.devcluster.pools import COPY_LABEL, POOL_LABEL, load_pools, render_nodes
from e2e.devcluster.progress import progress


def install_crds(binary: Path, kubeconfig: Path) -> None:
    """Apply the third-party CRDs (server-side) unless they all exist already."""
    existing = {
        item["metadata"]["name"] for item in kubectl_json(binary, kubeconfig, "get", "crd")["items"]
    }
    if set(required_crd_names()) <= existing:
        return
    files = crd_files()
    progress(
        f"installing {len(files)} third-party CRD files (Istio, prometheus-operator, "
        "LWS, KEDA, Gateway API)"
    )
    args = ["apply", "--server-side", "--force-conflicts", "--field-manager=devcluster"]
    for f in files:
        args += ["-f", str(f)]
    kubectl(binary, kubeconfig, *args, timeout=300)
    kubectl(
        binary,
        kubeconfig,
        "wait",
        "--for=condition=Established",
        "crd",
        "--all",
        "--timeout=120s",
        timeout=150,
    )


def reconcile_nodes(binary: Path, kubeconfig: Path, pools_file: Path | None, scale: int) -> int:
    """Create missing pool nodes, delete surplus ones; return the desired node count."""
    desired = render_nodes(load_pools(pools_file), scale)
    current = kubectl_json(binary, kubeconfig, "get", "nodes", "-l", POOL_LABEL)
    have = {n["metadata"]["name"] for n in current["items"]}
    want = {n["metadata"]["name"] for n in desired}
    if have - want:
        copies = ",".join(str(i) for i in range(scale))
        selector = quote(f"{POOL_LABEL},{COPY_LABEL},{COPY_LABEL} notin ({copies})")
        progress(f"deleting {len(have - want)} nodes not in the pools")
        kubectl(
            binary,
            kubeconfig,
            "delete",
            "--raw",
            f"/api/v1/nodes?labelSelector={selector}",
            timeout=300,
        )
        current = kubectl_json(binary, kubeconfig, "get", "nodes", "-l", POOL_LABEL)
        have = {n["metadata"]["name"] for n in current["items"]}
    extra = sorted(have - want)
    if extra:
        progress(f"deleting {len(extra)} more nodes not in the pools")
        kubectl(binary, kubeconfig, "delete", "node", *extra, "--wait=false")
    missing = [n for n in desired if n["metadata"]["name"] not in have]
    if missing:
        progress(f"creating {len(missing)} simulated nodes")
        doc = {"apiVersion": "v1", "kind": "List", "items": missing}
        kubectl(binary, kubeconfig, "create", "-f", "-", stdin=json.dumps(doc), timeout=600)
    return len(desired)


def wait_ready(binary: Path, kubeconfig: Path, count: int, timeout: float = 180) -> None:
    """Wait until ``count`` pool nodes are Ready and the default service account exists."""
    progress(f"waiting for {count} nodes to be Ready and the default service account")
    deadline = time.monotonic() + timeout
    while True:
        nodes = kubectl_json(binary, kubeconfig, "get", "nodes", "-l", POOL_LABEL)
        ready = sum(
            1
            for n in nodes["items"]
            if any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in n.get("status", {}).get("conditions", [])
            )
        )
        sa = kubectl(
            binary,
            kubeconfig,
            "get",
            "serviceaccount",
            "default",
            "-n",
            "default",
            check=False,
        )
        if ready >= count and sa.returncode == 0:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {ready}/{count} nodes Ready after {timeout:.0f}s")
        time.sleep(1)
