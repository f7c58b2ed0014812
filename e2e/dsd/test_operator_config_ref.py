"""E2E: ``spec.model.configRef`` plans a model outside the catalog from a ConfigMap.

Against the real local cluster and a real operator process: a DSD whose model the
catalog does not know is planned from the ``config.json`` in its ConfigMap; editing the
ConfigMap re-plans it (the operator watches ConfigMaps, the spec does not change); a DSD
whose ConfigMap is missing ends ``Planned=False`` with a message naming the ConfigMap,
and is planned as soon as the ConfigMap is created; deleting the ConfigMap of a served
DSD leaves it serving its last plan, Degraded.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from deepseek_operator.planning.examples import example_model_config
from e2e.operator_harness import (
    Kube,
    OperatorProcess,
    children,
    condition,
    dsd,
    find_condition,
    get_dsd,
    wait_current,
    wait_for,
)

pytestmark = pytest.mark.e2e
MODEL = "acme/tiny-llama"
CONFIG = example_model_config()


def _config_map(name: str, config: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name},
        "data": {"config.json": json.dumps(config)},
    }


def _tiny(name: str, config_map: str) -> dict[str, Any]:
    obj = dsd(name, MODEL, products=["L40S"])
    obj["spec"]["model"].update(maxModelLen=4096, configRef={"name": config_map})
    return obj


def _planned_false(kube: Kube, namespace: str, name: str) -> dict[str, Any]:
    def failed() -> dict[str, Any] | None:
        obj = get_dsd(kube, namespace, name)
        cond = find_condition(obj, "Planned")
        return obj if cond and cond["status"] == "False" else None

    return wait_for(f"{name} Planned=False", failed, 60)


def _events(kube: Kube, namespace: str, name: str) -> list[dict[str, Any]]:
    return list(
        kube.json(
            "get", "events", "-n", namespace, "--field-selector", f"involvedObject.name={name}"
        )["items"]
    )


def test_config_ref_plans_replans_on_change_and_reports_a_missing_config_map(
    kube: Kube, operator: OperatorProcess, namespace: str
) -> None:
    # create with configRef: planned from the ConfigMap, served
    kube.apply(_config_map("tiny-config", CONFIG), namespace)
    kube.apply(_tiny("tiny", "tiny-config"), namespace)
    served = wait_current(kube, namespace, "tiny")
    plan = served["status"]["plan"]
    assert plan["gpuProduct"] == "NVIDIA-L40S" and plan["modelName"] == MODEL
    assert children(kube, namespace, "tiny")

    # change the ConfigMap: re-planned without a spec change
    kube.apply(_config_map("tiny-config", example_model_config(num_hidden_layers=32)), namespace)

    def replanned() -> dict[str, Any] | None:
        obj = get_dsd(kube, namespace, "tiny")
        new = (obj.get("status") or {}).get("plan") or {}
        return obj if new.get("weightBytesPerGpu", 0) > plan["weightBytesPerGpu"] else None

    after = wait_for("re-plan after the ConfigMap changed", replanned, 60)
    assert after["metadata"]["generation"] == served["metadata"]["generation"]
    assert condition(after, "Planned")["status"] == "True"
    assert any(e["reason"] == "Replanned" for e in _events(kube, namespace, "tiny"))

    # a missing ConfigMap: Planned=False naming it, nothing deployed
    kube.apply(_tiny("orphan", "absent-config"), namespace)
    orphan = _planned_false(kube, namespace, "orphan")
    planned = condition(orphan, "Planned")
    assert planned["reason"] == "ModelConfigNotFound"
    assert f"ConfigMap {namespace}/absent-config" in planned["message"]
    assert orphan["status"]["phase"] == "Failed"
    assert condition(orphan, "Stalled")["status"] == "True"
    assert not children(kube, namespace, "orphan")
    assert any(
        e["type"] == "Warning" and e["reason"] == "ModelConfigNotFound"
        for e in _events(kube, namespace, "orphan")
    )
    # ... and planned once the ConfigMap exists
    kube.apply(_config_map("absent-config", CONFIG), namespace)
    wait_current(kube, namespace, "orphan")

    # the ConfigMap of a served DSD deleted: the last plan keeps serving, Degraded
    kube("delete", "configmap", "tiny-config", "-n", namespace)
    gone = _planned_false(kube, namespace, "tiny")
    assert condition(gone, "Planned")["reason"] == "ModelConfigNotFound"
    assert condition(gone, "Degraded")["status"] == "True"
    assert gone["status"]["plan"] == after["status"]["plan"]
    assert any(c["kind"] == "Deployment" for c in children(kube, namespace, "tiny"))
