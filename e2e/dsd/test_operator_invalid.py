"""E2E: invalid DeepSeekDeployments are refused with a message that says what to change.

Each case is either rejected by the apiserver (OpenAPI schema, enums, CEL rules from the
CRD) or accepted and then ends ``Planned=False`` from the operator (rules that need the
model or the cluster: tensor degree vs. heads, unknown GPU product, no pool large
enough, unknown model, an explicit engine kind that cannot serve the plan). A valid DSD
in the same namespace stays Ready and untouched.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from e2e.operator_harness import (
    Kube,
    OperatorProcess,
    children,
    condition,
    current,
    dsd,
    find_condition,
    wait_current,
    wait_for,
)

pytestmark = pytest.mark.e2e
R1 = "deepseek-ai/DeepSeek-R1"
DISTILL_7B = "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B"


def _with(base: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    obj = copy.deepcopy(base)
    node = obj["spec"]
    keys = path.split(".")
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    node[keys[-1]] = value
    return obj


BASE = dsd("x", DISTILL_7B, products=["L40S"])

# name -> (manifest, words the apiserver's message must contain)
REJECTED: dict[str, tuple[dict[str, Any], list[str]]] = {
    "bad-quantization": (_with(BASE, "model.quantization", "fp4"), ["quantization", "fp4"]),
    "bad-engine": (_with(BASE, "engine.kind", "tensorrt"), ["engine.kind"]),
    "negative-replicas": (_with(BASE, "replicas", -1), ["replicas"]),
    "min-over-max": (
        _with(_with(BASE, "replicas", None), "autoscaling", {"minReplicas": 5, "maxReplicas": 2}),
        ["minReplicas must not exceed"],
    ),
    "replicas-and-autoscaling": (
        _with(BASE, "autoscaling", {"minReplicas": 1, "maxReplicas": 2}),
        ["either spec.replicas or spec.autoscaling"],
    ),
    "falling-canary": (
        _with(
            _with(BASE, "traffic", {"istio": {"hosts": ["x.example.com"]}}),
            "rollout",
            {"strategy": "Canary", "canary": {"steps": [{"weight": 50}, {"weight": 20}]}},
        ),
        ["must rise strictly"],
    ),
    "bad-source-uri": (_with(BASE, "model.source", {"uri": "ftp://weights"}), ["source.uri"]),
    "tiny-max-model-len": (_with(BASE, "model.maxModelLen", 100), ["maxModelLen"]),
    "bad-block-size": (_with(BASE, "engine.kvCache", {"blockSize": 7}), ["blockSize"]),
}

# name -> (manifest, words the Planned=False message must contain)
UNPLANNABLE: dict[str, tuple[dict[str, Any], list[str]]] = {
    "tensor-3": (
        _with(dsd("x", R1, products=["H200"]), "parallelism", {"tensor": 3}),
        ["tensor 3 does not divide", "use one of"],
    ),
    "unknown-gpu": (dsd("x", R1, products=["B200"]), ["B200"]),
    "no-pool-large-enough": (
        _with(dsd("x", R1, products=["L40S"]), "model.quantization", "none"),
        ["GiB"],
    ),
    "unknown-model": (dsd("x", "acme/not-a-deepseek-model", products=["H100"]), ["config"]),
    "tensor-beyond-node": (
        _with(dsd("x", R1, products=["H200"]), "parallelism", {"tensor": 16}),
        ["tensor", "To fit"],
    ),
    "native-fp8-kv-cache": (
        _with(BASE, "engine", {"kind": "native", "kvCache": {"dtype": "fp8"}}),
        ["engine.kind native", "KV only as auto", "spec.engine.kvCache.dtype"],
    ),
}


def test_invalid_specs_are_refused_and_neighbours_are_unaffected(
    kube: Kube, operator: OperatorProcess, namespace: str
) -> None:
    assert len(REJECTED) + len(UNPLANNABLE) >= 10
    kube.apply(dsd("good", DISTILL_7B, products=["L40S"]), namespace)
    good = wait_current(kube, namespace, "good")
    good_children = {
        c["metadata"]["name"] + c["kind"]: c["metadata"]["resourceVersion"]
        for c in children(kube, namespace, "good")
    }

    for name, (manifest, words) in REJECTED.items():
        obj = copy.deepcopy(manifest)
        obj["metadata"]["name"] = name
        if obj["spec"].get("replicas", 0) is None:
            del obj["spec"]["replicas"]
        proc = kube.apply(obj, namespace, check=False)
        assert proc.returncode != 0, f"{name}: the apiserver accepted it"
        for word in words:
            assert word in proc.stderr, f"{name}: {word!r} not in {proc.stderr!r}"

    for name, (manifest, _) in UNPLANNABLE.items():
        obj = copy.deepcopy(manifest)
        obj["metadata"]["name"] = name
        kube.apply(obj, namespace)
    for name, (_, words) in UNPLANNABLE.items():

        def failed(name: str = name) -> dict[str, Any] | None:
            o = kube.json("get", "dsd", name, "-n", namespace)
            c = find_condition(o, "Planned")
            return o if c and c["status"] == "False" else None

        obj = wait_for(f"{name} Planned=False", failed, 60)
        planned = condition(obj, "Planned")
        assert planned is not None
        for word in words:
            assert word in planned["message"], f"{name}: {word!r} not in {planned['message']!r}"
        assert planned["reason"] in {"PlanFailed", "InvalidSpec"}
        assert obj["status"]["phase"] == "Failed"
        assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"]
        assert condition(obj, "Ready")["status"] == "False"
        assert not children(kube, namespace, name), f"{name}: children were created"
        events = kube.json(
            "get", "events", "-n", namespace, "--field-selector", f"involvedObject.name={name}"
        )["items"]
        assert any(e["type"] == "Warning" and e["reason"] == planned["reason"] for e in events), (
            name
        )

    after = kube.json("get", "dsd", "good", "-n", namespace)
    assert current(after)
    assert after["metadata"]["resourceVersion"] == good["metadata"]["resourceVersion"]
    assert {
        c["metadata"]["name"] + c["kind"]: c["metadata"]["resourceVersion"]
        for c in children(kube, namespace, "good")
    } == good_children
