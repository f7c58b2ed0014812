"""``spec.model.configRef``: reading config.json from a ConfigMap, planning from it, and
re-planning when it changes (one reconcile pass against the in-memory API)."""

from __future__ import annotations

import copy
import json
from typing import Any, cast

import pytest
from test_controller_reconcile import NODES, FakeKube

from deepseek_operator.api.model import ConfigMapKeyReference
from deepseek_operator.controllers import reconcile as rc
from deepseek_operator.controllers.events import EventSpec
from deepseek_operator.controllers.kube import Kube
from deepseek_operator.controllers.model_config import (
    REASON_INVALID,
    REASON_NOT_FOUND,
    ModelConfigError,
    config_map_key,
    model_config_from,
)
from deepseek_operator.controllers.planning_step import plan_outcome
from deepseek_operator.planning.examples import example_model_config

pytestmark = pytest.mark.unit
CONFIG = example_model_config()
REF = ConfigMapKeyReference(name="tiny-config")


def _config_map(data: dict[str, str], name: str = "tiny-config") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "ns"},
        "data": data,
    }


def _dsd(ref: dict[str, Any] | None = None) -> dict[str, Any]:
    model: dict[str, Any] = {
        "name": "acme/tiny",
        "source": {"uri": "pvc://w/tiny"},
        "maxModelLen": 4096,
    }
    if ref is not None:
        model["configRef"] = ref
    return {
        "apiVersion": "deepseek.ai/v1alpha1",
        "kind": "DeepSeekDeployment",
        "metadata": {"name": "tiny", "namespace": "ns", "uid": "uid-t", "generation": 1},
        "spec": {"model": model, "replicas": 1, "placement": {"gpu": {"products": ["L40S"]}}},
    }


def test_config_is_read_from_the_referenced_key() -> None:
    cm = _config_map({"config.json": json.dumps(CONFIG), "other": "x"})
    assert model_config_from(cm, REF, "ns") == CONFIG
    custom = ConfigMapKeyReference(name="tiny-config", key="other.json")
    cm2 = _config_map({"other.json": json.dumps(CONFIG)})
    assert model_config_from(cm2, custom, "ns")["hidden_size"] == 256


@pytest.mark.parametrize(
    ("config_map", "reason", "words"),
    [
        (None, REASON_NOT_FOUND, ["ConfigMap ns/tiny-config", "does not exist", "config.json"]),
        (
            _config_map({"README": "x", "cfg": "{}"}),
            REASON_INVALID,
            ["no key 'config.json'", "README, cfg"],
        ),
        (_config_map({"config.json": "{not json"}), REASON_INVALID, ["not valid JSON", "line 1"]),
        (_config_map({"config.json": "[1, 2]"}), REASON_INVALID, ["expected a JSON object"]),
    ],
)
def test_unreadable_config_says_what_to_change(
    config_map: dict[str, Any] | None, reason: str, words: list[str]
) -> None:
    with pytest.raises(ModelConfigError) as err:
        model_config_from(config_map, REF, "ns")
    assert err.value.reason == reason
    assert "spec.model.configRef" in err.value.message
    for word in words:
        assert word in err.value.message


def test_config_map_key_comes_from_the_raw_body() -> None:
    assert config_map_key(_dsd({"name": "tiny-config"})) == ("ns", "tiny-config")
    assert config_map_key(_dsd()) is None
    no_namespace = _dsd({"name": "c"})
    del no_namespace["metadata"]["namespace"]
    assert config_map_key(no_namespace) == ("default", "c")
    assert config_map_key({"spec": {"model": {"configRef": {"key": "k"}}}}) is None


def test_plan_outcome_plans_from_the_config_map() -> None:
    body = _dsd({"name": "tiny-config"})
    cm = _config_map({"config.json": json.dumps(CONFIG)})
    result = plan_outcome(body, NODES, cm)
    assert result.outcome.ok and result.outcome.plan is not None
    assert result.outcome.plan["gpuProduct"] == "NVIDIA-L40S"
    # without configRef an uncatalogued model cannot be planned; a ConfigMap alone is ignored
    unplanned = plan_outcome(_dsd(), NODES, cm)
    assert not unplanned.outcome.ok and "configRef" in unplanned.outcome.message


def test_missing_or_invalid_config_is_planned_false() -> None:
    body = _dsd({"name": "tiny-config"})
    missing = plan_outcome(body, NODES, None)
    assert not missing.outcome.ok and missing.outcome.reason == REASON_NOT_FOUND
    assert "ConfigMap ns/tiny-config" in missing.outcome.message
    broken = {k: v for k, v in CONFIG.items() if k != "num_hidden_layers"}
    invalid = plan_outcome(body, NODES, _config_map({"config.json": json.dumps(broken)}))
    assert not invalid.outcome.ok and invalid.outcome.reason == REASON_INVALID
    assert "ConfigMap ns/tiny-config" in invalid.outcome.message
    assert "num_hidden_layers" in invalid.outcome.message


def _store(fake: FakeKube, obj: dict[str, Any]) -> None:
    meta = obj["metadata"]
    fake.objects[(obj["kind"], meta["namespace"], meta["name"])] = copy.deepcopy(obj)


def _pass(fake: FakeKube, events: list[EventSpec]) -> rc.PassReport:
    body = copy.deepcopy(fake.objects[("DeepSeekDeployment", "ns", "tiny")])
    return rc.reconcile(body, NODES, cast(Kube, fake), events.append)


def _recorded(fake: FakeKube) -> dict[str, Any]:
    return dict(fake.objects[("DeepSeekDeployment", "ns", "tiny")]["status"])


def test_a_pass_reads_the_config_map_and_replans_when_it_changes() -> None:
    fake, events = FakeKube(), []
    _store(fake, _dsd({"name": "tiny-config"}))
    report = _pass(fake, events)
    assert report.outcome is not None and report.outcome.reason == REASON_NOT_FOUND
    assert _recorded(fake)["phase"] == "Failed"
    assert not [k for (k, _, _) in fake.objects if k == "Deployment"]

    _store(fake, _config_map({"config.json": json.dumps(CONFIG)}))
    report = _pass(fake, events)
    assert report.outcome is not None and report.outcome.ok
    first_plan = _recorded(fake)["plan"]
    assert ("Deployment", "ns", "tiny") in fake.objects

    _store(
        fake, _config_map({"config.json": json.dumps(example_model_config(num_hidden_layers=32))})
    )
    report = _pass(fake, events)
    assert report.outcome is not None and report.outcome.ok
    replanned = _recorded(fake)["plan"]
    assert replanned["weightBytesPerGpu"] > first_plan["weightBytesPerGpu"]
    assert [e.reason for e in events] == [REASON_NOT_FOUND, "Planned", "Replanned"]

    fake.calls.clear()  # an unchanged ConfigMap: no write at all
    _pass(fake, events)
    assert fake.calls["apply"] == 0 and fake.calls["patch_status"] == 0

    del fake.objects[("ConfigMap", "ns", "tiny-config")]
    report = _pass(fake, events)
    status = _recorded(fake)
    assert report.outcome is not None and report.outcome.reason == REASON_NOT_FOUND
    assert status["phase"] == "Degraded" and status["plan"] == replanned  # still serving
