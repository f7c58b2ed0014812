"""Unit tests of one reconcile pass against an in-memory API (the apiserver is not the subject).

The fake stores objects by (kind, namespace, name), applies by replacing, and counts every
call, so the tests can assert exactly which reads and writes a pass sends.
"""

from __future__ import annotations

import copy
from collections import Counter
from typing import Any, cast

import pytest

from deepseek_operator.controllers import reconcile as rc
from deepseek_operator.controllers.events import EventSpec
from deepseek_operator.controllers.kube import Kube, ResourceInfo
from deepseek_operator.controllers.nodes import project_node
from deepseek_operator.controllers.semantic import HASH_ANNOTATION
from deepseek_operator.planning.examples import example_nodes

pytestmark = pytest.mark.unit
NODES = [project_node(n) for n in example_nodes()]


class FakeKube:
    """The subset of :class:`Kube` a pass uses, over a dict."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str | None, str], dict[str, Any]] = {}
        self.calls: Counter[str] = Counter()
        self.rv = 1

    def resource(self, api_version: str, kind: str) -> ResourceInfo | None:
        return ResourceInfo(api_version, kind, kind.lower() + "s", True)

    def get(
        self, api_version: str, kind: str, namespace: str | None, name: str
    ) -> dict[str, Any] | None:
        self.calls["get"] += 1
        obj = self.objects.get((kind, namespace, name))
        return copy.deepcopy(obj) if obj else None

    def list(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        label_selector: str | None = None,
    ) -> list[dict[str, Any]]:
        self.calls["list"] += 1
        wanted = dict(p.split("=") for p in (label_selector or "").split(",") if p)
        return [
            copy.deepcopy(o)
            for (k, ns, _), o in self.objects.items()
            if k == kind
            and ns == namespace
            and wanted.items() <= (o["metadata"].get("labels") or {}).items()
        ]

    def apply(self, obj: dict[str, Any], *, force: bool = True) -> dict[str, Any]:
        self.calls["apply"] += 1
        stored = copy.deepcopy(obj)
        self.rv += 1
        stored["metadata"]["resourceVersion"] = str(self.rv)
        meta = stored["metadata"]
        self.objects[(stored["kind"], meta.get("namespace"), meta["name"])] = stored
        return copy.deepcopy(stored)

    def delete(self, api_version: str, kind: str, namespace: str | None, name: str) -> bool:
        self.calls["delete"] += 1
        return self.objects.pop((kind, namespace, name), None) is not None

    def patch_status(
        self,
        api_version: str,
        kind: str,
        namespace: str,
        name: str,
        *,
        status: dict[str, Any],
        resource_version: str | None,
    ) -> dict[str, Any]:
        self.calls["patch_status"] += 1
        obj = self.objects[(kind, namespace, name)]
        obj.setdefault("status", {}).update(copy.deepcopy(status))
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        return copy.deepcopy(obj)


def _dsd(fake: FakeKube, products: list[str]) -> dict[str, Any]:
    body = {
        "apiVersion": "deepseek.ai/v1alpha1",
        "kind": "DeepSeekDeployment",
        "metadata": {
            "name": "r1",
            "namespace": "ns",
            "uid": "uid-1",
            "generation": 1,
            "resourceVersion": "1",
        },
        "spec": {
            "model": {
                "name": "deepseek-ai/DeepSeek-R1",
                "source": {"uri": "hf://deepseek-ai/DeepSeek-R1"},
                "quantization": "fp8",
            },
            "placement": {"gpu": {"products": products}},
            "replicas": 1,
        },
    }
    fake.objects[("DeepSeekDeployment", "ns", "r1")] = copy.deepcopy(body)
    return body


def _pass(fake: FakeKube, body: dict[str, Any], events: list[EventSpec]) -> rc.PassReport:
    return rc.reconcile(body, NODES, cast(Kube, fake), events.append)


def test_first_pass_applies_every_child_without_reading_them() -> None:
    fake, events = FakeKube(), []
    report = _pass(fake, _dsd(fake, ["H200"]), events)
    assert report.outcome is not None and report.outcome.ok
    kinds = {k for (k, _, _) in fake.objects}
    assert {"Deployment", "Service", "PodDisruptionBudget"} <= kinds
    assert fake.calls["apply"] == len(report.applied) and not report.unchanged
    assert fake.calls["list"] == 0 and fake.calls["delete"] == 0
    assert fake.calls["patch_status"] == 1
    assert [e.reason for e in events] == ["Planned"]
    child = fake.objects[("Deployment", "ns", "r1")]
    assert child["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert HASH_ANNOTATION in child["metadata"]["annotations"]


def test_resync_of_an_unchanged_dsd_sends_no_write() -> None:
    fake, events = FakeKube(), []
    _pass(fake, _dsd(fake, ["H200"]), events)
    body = copy.deepcopy(fake.objects[("DeepSeekDeployment", "ns", "r1")])
    fake.calls.clear()
    report = _pass(fake, body, events)
    assert fake.calls["apply"] == fake.calls["delete"] == fake.calls["patch_status"] == 0
    assert not report.applied and report.unchanged
    assert [e.reason for e in events] == ["Planned"]  # no second event


def test_replan_to_multi_node_prunes_the_deployment() -> None:
    fake, events = FakeKube(), []
    _pass(fake, _dsd(fake, ["H200"]), events)
    body = copy.deepcopy(fake.objects[("DeepSeekDeployment", "ns", "r1")])
    body["spec"]["placement"]["gpu"]["products"] = ["H100"]
    body["metadata"]["generation"] = 2
    report = _pass(fake, body, events)
    kinds = {k for (k, _, _) in fake.objects}
    assert "LeaderWorkerSet" in kinds and "Deployment" not in kinds
    assert "Deployment/r1" in report.pruned
    assert [e.reason for e in events] == ["Planned", "Replanned"]
    status = fake.objects[("DeepSeekDeployment", "ns", "r1")]["status"]
    assert status["observedGeneration"] == 2 and status["plan"]["nodesPerReplica"] == 2


def test_failed_replan_keeps_what_serves() -> None:
    fake, events = FakeKube(), []
    _pass(fake, _dsd(fake, ["H200"]), events)
    body = copy.deepcopy(fake.objects[("DeepSeekDeployment", "ns", "r1")])
    body["spec"]["placement"]["gpu"]["products"] = ["B200"]
    body["metadata"]["generation"] = 2
    before = {k for k in fake.objects}
    _pass(fake, body, events)
    assert {k for k in fake.objects} == before
    status = fake.objects[("DeepSeekDeployment", "ns", "r1")]["status"]
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Planned"]["status"] == "False"
    assert conditions["Degraded"]["reason"] == "PlanFailed"
    assert events[-1].type == "Warning" and events[-1].reason == "PlanFailed"


def test_delete_children_removes_only_owned_children() -> None:
    fake, events = FakeKube(), []
    _pass(fake, _dsd(fake, ["H200"]), events)
    stranger = copy.deepcopy(fake.objects[("Service", "ns", "r1")])
    stranger["metadata"]["name"] = "not-ours"
    stranger["metadata"]["ownerReferences"] = [{"uid": "someone-else"}]
    fake.objects[("Service", "ns", "not-ours")] = stranger
    deleted = rc.delete_children(cast(Kube, fake), "ns", "r1", "uid-1")
    assert "Deployment/r1" in deleted and "Service/not-ours" not in deleted
    assert set(fake.objects) == {("DeepSeekDeployment", "ns", "r1"), ("Service", "ns", "not-ours")}


class PartialKube(FakeKube):
    """A cluster without some CRDs."""

    def __init__(self, missing: set[str]) -> None:
        super().__init__()
        self.missing = missing

    def resource(self, api_version: str, kind: str) -> ResourceInfo | None:
        return None if kind in self.missing else super().resource(api_version, kind)


def test_missing_optional_crds_are_skipped_and_named() -> None:
    fake, events = PartialKube({"ServiceMonitor", "PrometheusRule"}), []
    report = _pass(fake, _dsd(fake, ["H200"]), events)
    kinds = {k for (k, _, _) in fake.objects}
    assert "Deployment" in kinds and "ServiceMonitor" not in kinds
    assert any(s.startswith("ServiceMonitor") for s in report.skipped)
    planned = next(
        c
        for c in fake.objects[("DeepSeekDeployment", "ns", "r1")]["status"]["conditions"]
        if c["type"] == "Planned"
    )
    assert planned["status"] == "True" and "CRD not installed" in planned["message"]


def test_missing_workload_api_fails_the_plan_and_deploys_nothing() -> None:
    fake, events = PartialKube({"LeaderWorkerSet"}), []
    _pass(fake, _dsd(fake, ["H100"]), events)
    assert set(fake.objects) == {("DeepSeekDeployment", "ns", "r1")}
    status = fake.objects[("DeepSeekDeployment", "ns", "r1")]["status"]
    planned = next(c for c in status["conditions"] if c["type"] == "Planned")
    assert planned["status"] == "False" and planned["reason"] == "MissingAPI"
    assert "LeaderWorkerSet" in planned["message"]
    assert events[-1].reason == "MissingAPI"
