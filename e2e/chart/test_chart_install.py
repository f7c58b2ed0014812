"""The chart on the local cluster: server-side dry runs, install, upgrade, uninstall, CRDs.

Helm installs ``crds/`` on first install only and never upgrades or deletes them, so the
documented upgrade (docs/install.md) is ``kubectl apply --server-side --force-conflicts
-f charts/deepseek-operator/crds/`` before ``helm upgrade``. The CRD test proves both
halves with a probe CRD of its own added to a copy of the chart, so the shared
DeepSeekDeployment CRD that other tests use is never changed.

Release names, peering names and the probe CRD's group are unique per run: other sessions
share the cluster and these objects are cluster-scoped.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.chart.helm import CHART, NONDEFAULT_VALUES, Helm
from e2e.conftest import Kubectl
from e2e.operator_harness import wait_for

pytestmark = pytest.mark.e2e


def _split(manifest: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    docs = [d for d in yaml.safe_load_all(manifest) if d]
    crds = [d for d in docs if d["kind"] == "CustomResourceDefinition"]
    return crds, [d for d in docs if d["kind"] != "CustomResourceDefinition"]


def _apply_crds(kubectl: Kubectl, crds: list[dict[str, Any]]) -> None:
    kubectl(
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager=e2e",
        "-f",
        "-",
        stdin=yaml.safe_dump_all(crds),
    )
    for crd in crds:
        name = crd["metadata"]["name"]
        kubectl("wait", "--for=condition=Established", f"crd/{name}", "--timeout=60s")


@pytest.mark.parametrize("values", ["default", "nondefault"])
def test_template_passes_server_side_dry_run(
    helm_cli: Helm, kubectl: Kubectl, namespace: str, values: str
) -> None:
    extra = ["-f", str(NONDEFAULT_VALUES)] if values == "nondefault" else []
    crds, rest = _split(helm_cli.template("--include-crds", *extra, namespace=namespace))
    assert {c["spec"]["names"]["kind"] for c in crds} >= {"DeepSeekDeployment"}
    _apply_crds(kubectl, crds)
    proc = kubectl(
        "apply",
        "--dry-run=server",
        "-n",
        namespace,
        "-f",
        "-",
        stdin=yaml.safe_dump_all(rest),
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) == len(rest), proc.stdout


def test_install_upgrade_uninstall(helm_cli: Helm, kubectl: Kubectl, namespace: str) -> None:
    release = f"deepseek-operator-{uuid.uuid4().hex[:6]}"  # = the full name
    sets = ["--set", f"peering.name={release}"]
    helm_cli.run("install", release, str(CHART), "-n", namespace, *sets, "--wait", "--timeout=180s")
    deploy = kubectl.json("get", "deployment", release, "-n", namespace)
    assert deploy["spec"]["replicas"] == 2
    assert deploy["status"].get("readyReplicas") == 2
    kubectl("get", "clusterkopfpeering", release)
    kubectl("get", "clusterrole", release)

    # Upgrade: new values roll the Deployment; the schema still guards every upgrade.
    helm_cli.run(
        "upgrade",
        release,
        str(CHART),
        "-n",
        namespace,
        "--reuse-values",
        "--set",
        "replicaCount=1",
        "--set",
        "operator.logFormat=plain",
        "--wait",
        "--timeout=180s",
    )
    deploy = kubectl.json("get", "deployment", release, "-n", namespace)
    assert deploy["spec"]["replicas"] == 1
    assert "--log-format=plain" in deploy["spec"]["template"]["spec"]["containers"][0]["args"]
    bad = helm_cli.run(
        "upgrade",
        release,
        str(CHART),
        "-n",
        namespace,
        "--reuse-values",
        "--set",
        "operator.logFormat=xml",
        check=False,
    )
    assert bad.returncode != 0 and "logFormat" in bad.stderr
    history = yaml.safe_load(helm_cli.run("history", release, "-n", namespace, "-o", "yaml").stdout)
    assert [(h["revision"], h["status"]) for h in history] == [(1, "superseded"), (2, "deployed")]

    helm_cli.run("uninstall", release, "-n", namespace, "--wait", "--timeout=120s")
    assert kubectl("get", "deployment", release, "-n", namespace, check=False).returncode != 0
    assert kubectl("get", "clusterrole", release, check=False).returncode != 0
    assert kubectl("get", "clusterkopfpeering", release, check=False).returncode != 0
    # Helm leaves CRDs behind on uninstall (they hold users' objects).
    kubectl("get", "crd", "deepseekdeployments.deepseek.ai")


def _probe_crd(group: str, with_column: bool) -> dict[str, Any]:
    version: dict[str, Any] = {
        "name": "v1",
        "served": True,
        "storage": True,
        "schema": {
            "openAPIV3Schema": {
                "type": "object",
                "properties": {
                    "spec": {"type": "object", "properties": {"size": {"type": "integer"}}}
                },
            }
        },
    }
    if with_column:
        version["additionalPrinterColumns"] = [
            {"name": "Size", "type": "integer", "jsonPath": ".spec.size"}
        ]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"probes.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "probes", "singular": "probe", "kind": "Probe"},
            "versions": [version],
        },
    }


def test_crd_upgrade_path(helm_cli: Helm, kubectl: Kubectl, namespace: str, tmp_path: Path) -> None:
    group = f"p{uuid.uuid4().hex[:8]}.e2e.deepseek.ai"
    chart = tmp_path / "deepseek-operator"
    shutil.copytree(CHART, chart)
    probe = chart / "crds" / "zz-probe.yaml"
    probe.write_text(yaml.safe_dump(_probe_crd(group, with_column=False)))
    release = f"deepseek-operator-{uuid.uuid4().hex[:6]}"  # = the full name
    sets = ["--set", f"peering.name={release}", "--set", "replicaCount=1"]
    try:
        helm_cli.run("install", release, str(chart), "-n", namespace, *sets)
        crd = kubectl.json("get", "crd", f"probes.{group}")
        assert "additionalPrinterColumns" not in crd["spec"]["versions"][0]

        # A new chart version changes the CRD: helm upgrade does not touch it ...
        probe.write_text(yaml.safe_dump(_probe_crd(group, with_column=True)))
        helm_cli.run("upgrade", release, str(chart), "-n", namespace, "--reuse-values")
        crd = kubectl.json("get", "crd", f"probes.{group}")
        assert "additionalPrinterColumns" not in crd["spec"]["versions"][0]

        # ... the documented command does. Helm created the CRDs under its own field
        # manager, so a plain server-side apply conflicts on every changed field:
        plain = kubectl("apply", "--server-side", "-f", str(chart / "crds"), check=False)
        assert plain.returncode != 0 and 'conflict with "helm"' in plain.stderr, plain.stderr
        kubectl("apply", "--server-side", "--force-conflicts", "-f", str(chart / "crds"))

        def upgraded() -> bool:
            got = kubectl.json("get", "crd", f"probes.{group}")
            return "additionalPrinterColumns" in got["spec"]["versions"][0]

        wait_for("probe CRD upgraded", upgraded, 30)
        helm_cli.run("uninstall", release, "-n", namespace, "--wait")
        kubectl("get", "crd", f"probes.{group}")  # uninstall keeps CRDs
    finally:
        helm_cli.run("uninstall", release, "-n", namespace, check=False)
        kubectl("delete", "crd", f"probes.{group}", "--wait=false", check=False)
