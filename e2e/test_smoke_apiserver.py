"""Smoke e2e: the real kube-apiserver validates built-in objects and third-party CRDs."""

from __future__ import annotations

import json
from typing import Any

import pytest

from e2e.conftest import Kubectl

pytestmark = pytest.mark.e2e


def _create(kubectl: Kubectl, namespace: str, obj: dict[str, Any]) -> Any:
    return kubectl("create", "-n", namespace, "-f", "-", stdin=json.dumps(obj), check=False)


def _deployment(name: str, replicas: int, selector: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "example.invalid/app:1"}]},
            },
        },
    }


def test_apiserver_rejects_invalid_deployment(kubectl: Kubectl, namespace: str) -> None:
    bad = _deployment("bad", replicas=-1, selector={"app": "other"})
    proc = _create(kubectl, namespace, bad)
    assert proc.returncode != 0
    assert "is invalid" in proc.stderr
    assert "spec.replicas" in proc.stderr
    assert "selector" in proc.stderr
    listed = kubectl.json("get", "deployments", "-n", namespace)
    assert listed["items"] == []


def _virtual_service(hosts: Any) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "vs"},
        "spec": {
            "hosts": hosts,
            "http": [
                {
                    "route": [
                        {"destination": {"host": "svc", "subset": "stable"}, "weight": 90},
                        {"destination": {"host": "svc", "subset": "canary"}, "weight": 10},
                    ]
                }
            ],
        },
    }


def test_virtual_service_accepted_and_wrong_type_rejected(kubectl: Kubectl, namespace: str) -> None:
    ok = _create(kubectl, namespace, _virtual_service(["svc"]))
    assert ok.returncode == 0, ok.stderr
    stored = kubectl.json("get", "virtualservice", "vs", "-n", namespace)
    assert stored["spec"]["http"][0]["route"][1]["weight"] == 10

    bad = _virtual_service("svc")  # hosts must be a list of strings
    bad["metadata"]["name"] = "vs-bad"
    proc = _create(kubectl, namespace, bad)
    assert proc.returncode != 0
    assert "spec.hosts" in proc.stderr


def _service_monitor(name: str, port: Any) -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {"name": name},
        "spec": {
            "selector": {"matchLabels": {"app": "svc"}},
            "endpoints": [{"port": port, "path": "/metrics", "interval": "15s"}],
        },
    }


def test_service_monitor_accepted_and_wrong_type_rejected(kubectl: Kubectl, namespace: str) -> None:
    ok = _create(kubectl, namespace, _service_monitor("sm", "http"))
    assert ok.returncode == 0, ok.stderr

    proc = _create(kubectl, namespace, _service_monitor("sm-bad", 8080))  # port is a name
    assert proc.returncode != 0
    assert "spec.endpoints[0].port" in proc.stderr


@pytest.mark.parametrize(
    "crd",
    [
        "destinationrules.networking.istio.io",
        "prometheusrules.monitoring.coreos.com",
        "leaderworkersets.leaderworkerset.x-k8s.io",
        "scaledobjects.keda.sh",
        "gateways.gateway.networking.k8s.io",
        "httproutes.gateway.networking.k8s.io",
    ],
)
def test_third_party_crd_established(kubectl: Kubectl, crd: str) -> None:
    obj = kubectl.json("get", "crd", crd)
    conditions = {c["type"]: c["status"] for c in obj["status"]["conditions"]}
    assert conditions.get("Established") == "True"
