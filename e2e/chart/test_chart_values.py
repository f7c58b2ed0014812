"""The chart's values: strict lint is clean and values.schema.json rejects mistakes.

Each case renders the chart with one wrong value and expects helm to refuse it, naming the
value; a correct non-default values set (``values-nondefault.yaml``) must render and land
where it should. No cluster access: these use ``helm lint`` and ``helm template`` only.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from e2e.chart.helm import CHART, NONDEFAULT_VALUES, ROOT, Helm

pytestmark = pytest.mark.e2e


def _docs(manifest: str) -> dict[str, dict[str, Any]]:
    return {d["kind"]: d for d in yaml.safe_load_all(manifest) if d}


def test_lint_strict_is_clean(helm_cli: Helm) -> None:
    for extra in ([], ["-f", str(NONDEFAULT_VALUES)]):
        proc = helm_cli.run("lint", "--strict", str(CHART), *extra)
        assert "0 chart(s) failed" in proc.stdout, proc.stdout
        assert "[WARNING]" not in proc.stdout and "[INFO]" not in proc.stdout, proc.stdout


def test_schema_covers_every_default_value() -> None:
    """Every key in values.yaml is declared (so additionalProperties: false cannot bite it)."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def walk(val: Any, sch: dict[str, Any], path: str) -> None:
        if "$ref" in sch:
            sch = schema["definitions"][sch["$ref"].rsplit("/", 1)[-1]]
        if not isinstance(val, dict) or "properties" not in sch:
            return
        for key, sub in val.items():
            assert key in sch["properties"], f"{path}{key} is not in values.schema.json"
            walk(sub, sch["properties"][key], f"{path}{key}.")

    walk(values, schema, "")


@pytest.mark.parametrize(
    ("setting", "complaint"),
    [
        ("replicaCount=two", "replicaCount"),
        ("replicaCount=-1", "replicaCount"),
        ("operator.workers=1.5", "workers"),
        ("operator.logFormat=xml", "logFormat"),
        ("operator.verbose=maybe", "verbose"),
        ("operator.healthPort=80", "healthPort"),
        ("image.pullPolicy=Sometimes", "pullPolicy"),
        ("image.digest=latest", "digest"),
        ("replicas=2", "replicas"),  # unknown key: a typo of replicaCount
        ("operator.resync=10", "resync"),  # unknown nested key
        ("resources.requests.gpu=1", "gpu"),
        ("peering.name=Not_A_DNS_Name", "name"),
        ("nodeSelector.zone=1", "zone"),  # --set makes 1 an integer; labels are strings
    ],
)
def test_schema_rejects(helm_cli: Helm, setting: str, complaint: str) -> None:
    proc = helm_cli.run("template", "probe", str(CHART), "--set", setting, check=False)
    assert proc.returncode != 0, f"--set {setting} was accepted"
    assert "values don't meet the specifications of the schema" in proc.stderr, proc.stderr
    assert complaint in proc.stderr, proc.stderr


def test_nondefault_values_render_where_they_should(helm_cli: Helm) -> None:
    docs = _docs(helm_cli.template("-f", str(NONDEFAULT_VALUES), namespace="ops"))
    assert "ClusterKopfPeering" not in docs  # peering.create: false
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == (
        "registry.example.com/mirror/deepseek-operator@sha256:" + "0123456789abcdef" * 4
    )
    assert container["imagePullPolicy"] == "Always"
    assert "--standalone" in container["args"]
    assert {"--namespace=team-a", "--namespace=team-b", "--log-format=plain", "--verbose"} <= set(
        container["args"]
    )
    assert container["ports"][0]["containerPort"] == 9090
    assert pod["serviceAccountName"] == "dsk-operator"
    assert pod["priorityClassName"] == "system-cluster-critical"
    assert pod["imagePullSecrets"] == [{"name": "mirror-credentials"}]
    assert docs["Deployment"]["spec"]["replicas"] == 1
    assert docs["ClusterRoleBinding"]["subjects"][0] == {
        "kind": "ServiceAccount",
        "name": "dsk-operator",
        "namespace": "ops",
    }


def test_default_image_is_the_project_version(helm_cli: Helm) -> None:
    version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert f'\nversion = "{version}"\n' in pyproject
    image = _docs(helm_cli.template())["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert image["image"] == f"ghcr.io/deepseek-k8s/deepseek-operator:{version}"
