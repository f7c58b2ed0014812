"""The generated CRD: in sync with crds/, structural, teaching, with CEL rules and subresources."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from deepseek_operator.api import DeepSeekDeploymentSpec
from deepseek_operator.crd import CRD_FILE, REGENERATE_COMMAND, build_crd, crd_yaml

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN_KEYS = {
    "$ref",
    "$defs",
    "definitions",
    "anyOf",
    "oneOf",
    "allOf",
    "not",
    "title",
    "const",
    "discriminator",
}


def _schema() -> dict[str, Any]:
    return build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def _walk(node: dict[str, Any], path: str = ""):  # type: ignore[no-untyped-def]
    yield path, node
    for key, child in node.get("properties", {}).items():
        yield from _walk(child, f"{path}.{key}")
    if isinstance(node.get("items"), dict):
        yield from _walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _walk(node["additionalProperties"], f"{path}{{}}")


def test_committed_crd_matches_the_models() -> None:
    committed = (ROOT / "crds" / CRD_FILE).read_text(encoding="utf-8")
    assert committed == crd_yaml(), f"crds/ drifted from the models; run: {REGENERATE_COMMAND}"
    assert yaml.safe_load(committed) == build_crd()


def test_schema_is_structural() -> None:
    for path, node in _walk(_schema()):
        assert not FORBIDDEN_KEYS & node.keys(), f"{path}: {FORBIDDEN_KEYS & node.keys()}"
        typed = (
            "type" in node
            or node.get("x-kubernetes-int-or-string")
            or node.get("x-kubernetes-preserve-unknown-fields")
        )
        assert typed, f"{path} has no type"
        assert node.get("additionalProperties") is not False, path
        assert not ("properties" in node and "additionalProperties" in node), path
        if "default" in node:
            assert node["default"] is not None, path


def test_preserve_unknown_fields_only_for_core_affinity() -> None:
    preserved = [p for p, n in _walk(_schema()) if n.get("x-kubernetes-preserve-unknown-fields")]
    assert preserved == [".spec.placement.affinity"]


def test_every_spec_field_teaches() -> None:
    spec = _schema()["properties"]["spec"]
    missing = [
        p
        for p, n in _walk(spec, "spec")
        if p != "spec"
        and not n.get("description")
        and not p.endswith("[]")
        and not p.endswith("{}")
    ]
    assert missing == []
    placement = spec["properties"]["placement"]
    assert "GPU" in placement["description"]
    assert (
        "nvidia.com/gpu.product"
        in placement["properties"]["gpu"]["properties"]["products"]["description"]
    )


def test_defaults_enums_and_int_or_string() -> None:
    spec = _schema()["properties"]["spec"]["properties"]
    health = spec["resilience"]["properties"]["health"]["properties"]
    assert health["periodSeconds"]["default"] == 30
    assert health["failureThreshold"]["default"] == 3
    assert spec["engine"]["properties"]["kind"]["enum"] == ["auto", "native", "vllm", "triton"]
    assert spec["model"]["properties"]["quantization"]["enum"] == [
        "auto",
        "none",
        "fp8",
        "int8",
        "int4",
    ]
    surge = spec["rollout"]["properties"]["rollingUpdate"]["properties"]["maxSurge"]
    assert surge["x-kubernetes-int-or-string"] is True and surge["default"] == 1
    steps = spec["rollout"]["properties"]["canary"]["properties"]["steps"]
    assert steps["default"][0] == {"weight": 10, "pause": "5m"}
    assert steps["items"]["properties"]["weight"] == {
        "description": steps["items"]["properties"]["weight"]["description"],
        "type": "integer",
        "minimum": 0,
        "maximum": 100,
    }
    autoscaling = spec["autoscaling"]["properties"]
    assert (autoscaling["minReplicas"]["default"], autoscaling["maxReplicas"]["default"]) == (2, 10)
    assert "default" not in spec["replicas"]  # replicas XOR autoscaling: no default


def test_cel_rules_and_their_cost_bounds() -> None:
    schema = _schema()
    spec = schema["properties"]["spec"]
    rules = {r["rule"] for r in spec["x-kubernetes-validations"]}
    assert "!(has(self.replicas) && has(self.autoscaling))" in rules
    auto = spec["properties"]["autoscaling"]["x-kubernetes-validations"]
    assert auto[0]["rule"] == "self.minReplicas <= self.maxReplicas"
    steps = spec["properties"]["rollout"]["properties"]["canary"]["properties"]["steps"]
    assert "isSorted" in steps["x-kubernetes-validations"][0]["rule"]
    assert steps["maxItems"] == 20  # bounds the O(n^2) exists_one check
    assert "metadata.name.size()" in schema["x-kubernetes-validations"][0]["rule"]
    for path, node in _walk(schema):
        if node.get("type") == "array" and path.startswith(".spec"):
            assert "maxItems" in node, f"{path} needs maxItems for CEL cost estimation"
        if node.get("type") == "string" and path.startswith(".spec") and "enum" not in node:
            assert "maxLength" in node or "pattern" in node, f"{path} needs maxLength"


def test_subresources_columns_and_names() -> None:
    crd = build_crd()
    names = crd["spec"]["names"]
    assert names["shortNames"] == ["dsd"] and "deepseek" in names["categories"]
    version = crd["spec"]["versions"][0]
    assert version["subresources"]["scale"] == {
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    }
    assert version["subresources"]["status"] == {}
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    for wanted in ("Ready", "Replicas", "GPU", "TPxPPxEP", "Engine", "Canary", "Age"):
        assert wanted in columns
    conditions = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"][
        "conditions"
    ]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    assert "type" in conditions["items"]["required"]


def _apply_defaults(schema: dict[str, Any], obj: Any) -> Any:
    """Structural defaulting as the apiserver does it (defaults, then recurse)."""
    if isinstance(obj, dict) and "properties" in schema:
        for key, child in schema["properties"].items():
            if key not in obj and "default" in child:
                obj[key] = json.loads(json.dumps(child["default"]))
            if key in obj:
                obj[key] = _apply_defaults(child, obj[key])
    elif isinstance(obj, list) and isinstance(schema.get("items"), dict):
        return [_apply_defaults(schema["items"], item) for item in obj]
    return obj


def _prune_empty(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _prune_empty(v) for k, v in x.items() if v not in ({}, [], None)}
    if isinstance(x, list):
        return [_prune_empty(v) for v in x]
    return float(x) if isinstance(x, int) and not isinstance(x, bool) else x


@pytest.mark.parametrize(
    "sample", sorted((ROOT / "manifests" / "samples").glob("*.yaml")), ids=lambda p: p.stem
)
def test_crd_defaults_agree_with_model_defaults(sample: Path) -> None:
    # The apiserver fills CRD defaults on write; the controller parses with pydantic's.
    # Both must give the same spec (checked once against a v1.33 apiserver, kept here).
    spec = yaml.safe_load(sample.read_text(encoding="utf-8"))["spec"]
    by_server = _apply_defaults(_schema()["properties"]["spec"], json.loads(json.dumps(spec)))
    by_models = DeepSeekDeploymentSpec.model_validate(spec).to_k8s()
    assert _prune_empty(by_server) == _prune_empty(by_models)
