"""The generated install files (RBAC, peering CRDs, chart CRD copies) match their source."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from deepseek_operator.controllers.manifests import expected_files
from deepseek_operator.controllers.rbac import cluster_rules
from deepseek_operator.render.monitoring import ALERTS

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]


def test_generated_files_do_not_drift() -> None:
    stale = [
        str(rel)
        for rel, text in expected_files(ROOT).items()
        if not (ROOT / rel).is_file() or (ROOT / rel).read_text() != text
    ]
    assert not stale, (
        f"regenerate with `python -m deepseek_operator.controllers.manifests`: {stale}"
    )


def test_rbac_is_least_privilege() -> None:
    rules = cluster_rules()
    for rule in rules:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"]
        assert "*" not in rule["apiGroups"]
        assert not {"update", "deletecollection", "escalate", "bind", "impersonate"} & set(
            rule["verbs"]
        )
    resources = {r for rule in rules for r in rule["resources"]}
    assert not {"secrets", "customresourcedefinitions", "namespaces"} & resources
    # pods: read only, listed by the native autoscaler (starting / unschedulable pods)
    assert [r["verbs"] for r in rules if "pods" in r["resources"]] == [["list"]]


def test_kustomize_deployment_is_restricted() -> None:
    docs = list(yaml.safe_load_all((ROOT / "manifests/base/deployment.yaml").read_text()))
    pod = docs[0]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    ctr = pod["containers"][0]
    assert ctr["securityContext"]["readOnlyRootFilesystem"] is True
    assert ctr["securityContext"]["allowPrivilegeEscalation"] is False
    assert ctr["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert ctr["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert "--liveness=http://0.0.0.0:8080/healthz" in ctr["args"]


def test_every_rendered_alert_has_a_runbook() -> None:
    for alert in ALERTS:
        page = ROOT / "docs" / "runbooks" / f"{alert}.md"
        assert page.is_file(), f"missing runbook {page}"
        assert page.read_text().startswith(f"# {alert}")


def test_dashboard_queries_metrics_the_runtime_exports() -> None:
    dashboard = (ROOT / "manifests/monitoring/grafana-dashboard-deepseek.json").read_text()
    json.loads(dashboard)
    exported = "".join(
        p.read_text() for p in (ROOT / "runtime/deepseek_runtime/server").glob("*.py")
    )
    used = {re.sub(r"_(total|bucket)$", "", m) for m in re.findall(r"vllm:[a-z0-9_]+", dashboard)}
    missing = sorted(m for m in used if f'"{m}"' not in exported)
    assert not missing, f"dashboard queries metrics the runtime does not export: {missing}"
