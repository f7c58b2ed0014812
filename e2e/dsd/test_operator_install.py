"""E2E: the packaged install works on the real apiserver, with its least-privilege RBAC and HA.

- The Helm chart (``helm template --include-crds``) and the kustomize dev overlay are
  accepted by the apiserver (server-side dry run; CRDs applied for real).
- An operator authenticated as the chart's ServiceAccount (a token, the generated
  ClusterRole) serves a DSD to Ready without a single Forbidden: the RBAC is sufficient.
- Two replicas with kopf peering and random priorities: one works, the other stands by;
  after the active one is SIGKILLed the standby takes over and serves a spec change.
"""

from __future__ import annotations

import base64
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.devcluster import ClusterInfo
from e2e.operator_harness import (
    ROOT,
    Kube,
    OperatorProcess,
    dsd,
    get_dsd,
    wait_current,
    wait_for,
)

pytestmark = pytest.mark.e2e
DISTILL = "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B"
SYSTEM_NS = "deepseek-system"


def _dry_run(kube: Kube, manifest: str) -> None:
    docs = [d for d in yaml.safe_load_all(manifest) if d]
    crds = [d for d in docs if d["kind"] == "CustomResourceDefinition"]
    rest = [d for d in docs if d["kind"] not in {"CustomResourceDefinition", "Namespace"}]
    assert crds and rest
    kube(
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager=e2e",
        "-f",
        "-",
        stdin=yaml.safe_dump_all(crds),
    )
    kube("create", "namespace", SYSTEM_NS, check=False)
    proc = kube("apply", "--dry-run=server", "-f", "-", stdin=yaml.safe_dump_all(rest), check=False)
    assert proc.returncode == 0, proc.stderr
    kinds = {d["kind"] for d in rest}
    assert {
        "Deployment",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "ClusterKopfPeering",
    } <= kinds


def test_helm_chart_and_kustomize_are_accepted(cluster: ClusterInfo, kube: Kube) -> None:
    helm = subprocess.run(
        [
            str(cluster.helm),
            "template",
            "deepseek-operator",
            str(ROOT / "charts/deepseek-operator"),
            "--namespace",
            SYSTEM_NS,
            "--include-crds",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    _dry_run(kube, helm)
    kustomized = kube("kustomize", str(ROOT / "manifests/overlays/dev")).stdout
    _dry_run(kube, kustomized)


def _service_account_kubeconfig(kube: Kube, admin: Path, out: Path) -> Path:
    """A kubeconfig that authenticates as the operator's ServiceAccount (a bound token)."""
    base = kube("kustomize", str(ROOT / "manifests/base")).stdout
    docs = [d for d in yaml.safe_load_all(base) if d]
    kube("create", "namespace", SYSTEM_NS, check=False)
    sa_and_rbac = [
        d for d in docs if d["kind"] in {"ServiceAccount", "ClusterRole", "ClusterRoleBinding"}
    ]
    kube("apply", "-f", "-", stdin=yaml.safe_dump_all(sa_and_rbac))
    token = kube(
        "create", "token", "deepseek-operator", "-n", SYSTEM_NS, "--duration=1h"
    ).stdout.strip()
    cfg: dict[str, Any] = yaml.safe_load(admin.read_text())
    cluster = cfg["clusters"][0]["cluster"]
    if "certificate-authority" in cluster:
        ca = Path(cluster.pop("certificate-authority")).read_bytes()
        cluster["certificate-authority-data"] = base64.b64encode(ca).decode()
    sa_cfg = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "local", "cluster": cluster}],
        "users": [{"name": "operator", "user": {"token": token}}],
        "contexts": [{"name": "operator", "context": {"cluster": "local", "user": "operator"}}],
        "current-context": "operator",
    }
    out.write_text(yaml.safe_dump(sa_cfg))
    return out


def test_operator_runs_with_the_packaged_least_privilege_rbac(
    cluster: ClusterInfo, kube: Kube, namespace: str, tmp_path: Path
) -> None:
    sa_config = _service_account_kubeconfig(kube, cluster.kubeconfig, tmp_path / "sa.yaml")
    denied = kube(
        "auth",
        "can-i",
        "list",
        "secrets",
        "-A",
        "--as=system:serviceaccount:deepseek-system:deepseek-operator",
        check=False,
    )
    assert denied.stdout.strip() == "no"
    op = OperatorProcess(
        sa_config, tmp_path / "operator.log", resync_seconds=3, namespaces=(namespace,)
    ).start()
    try:
        op.wait_started()
        kube.apply(dsd("least-priv", DISTILL, products=["A100"]), namespace)
        ready = wait_current(kube, namespace, "least-priv")
        assert ready["status"]["readyReplicas"] == 1
        kube("delete", "dsd", "least-priv", "-n", namespace, "--timeout=60s")
        log = op.log_path.read_text()
    finally:
        op.stop()
    assert "Forbidden" not in log and " 403" not in log, "the packaged RBAC was not enough"


def test_two_replicas_with_peering_fail_over(
    cluster: ClusterInfo, kube: Kube, namespace: str, tmp_path: Path
) -> None:
    peering = {
        "apiVersion": "kopf.dev/v1",
        "kind": "KopfPeering",
        "metadata": {"name": "deepseek-operator", "namespace": namespace},
    }
    kube.apply(peering)
    replicas = [
        OperatorProcess(
            cluster.kubeconfig,
            tmp_path / f"replica-{i}.log",
            "--priority=auto",
            "--peering=deepseek-operator",
            "--peering-lifetime=8",
            resync_seconds=3,
            namespaces=(namespace,),
        )
        for i in range(2)
    ]
    for r in replicas:
        r.args.remove("--standalone")
        r.start()
    try:
        for r in replicas:
            r.wait_started()
        kube.apply(dsd("ha", DISTILL, products=["H100"]), namespace)
        wait_current(kube, namespace, "ha")

        def passes(r: OperatorProcess) -> int:
            return sum(
                1 for x in r.log_lines() if x.get("event") == "reconciled" and x.get("name") == "ha"
            )

        active = [r for r in replicas if passes(r)]
        assert len(active) == 1, [passes(r) for r in replicas]
        standby = next(r for r in replicas if r is not active[0])
        active[0].kill()
        time.sleep(1)
        kube("scale", "dsd", "ha", "-n", namespace, "--replicas=2")
        wait_for("standby takes over", lambda: passes(standby) > 0, 60)
        scaled = wait_current(kube, namespace, "ha", 90)
        assert get_dsd(kube, namespace, "ha")["status"]["readyReplicas"] == 2
        assert scaled["spec"]["replicas"] == 2
        kube("delete", "dsd", "ha", "-n", namespace, "--timeout=60s")  # standby finalizes
    finally:
        for r in replicas:
            r.stop()
