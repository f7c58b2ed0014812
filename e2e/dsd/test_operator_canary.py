"""E2E: a canary rollout driven by the operator and gated by a real Prometheus.

Two DSDs with ``rollout.strategy: Canary`` become Ready, then get a spec change. Their
analysis queries a real Prometheus (``/usr/bin/prometheus`` on 127.0.0.1) with constant
PromQL: ``vector(0.001)`` passes a max of 0.01, ``vector(1)`` fails it. The passing DSD
steps its canary weights and is promoted (the stable Deployment serves the new revision,
no canary Deployment is left); the failing one ends ``Failed`` with weight 0, no canary
Deployment and the stable Deployment still on the old pod template.
"""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from e2e.operator_harness import Kube, OperatorProcess, dsd, get_dsd, wait_current, wait_for

pytestmark = pytest.mark.e2e
MODEL = "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B"
REVISION = "deepseek.ai/revision"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def prometheus(prometheus_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Prometheus (no scrape targets: the analysis queries are constant PromQL)."""
    tmp = tmp_path_factory.mktemp("prometheus")
    (tmp / "prometheus.yml").write_text("global: {scrape_interval: 15s}\n")
    port = _free_port()
    proc = subprocess.Popen(
        [
            str(prometheus_bin),
            f"--config.file={tmp / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(tmp / "prometheus.log").open("wb"),
    )
    address = f"http://127.0.0.1:{port}"
    try:
        wait_for(
            "prometheus ready",
            lambda: httpx.get(f"{address}/-/ready", timeout=2).status_code == 200,
            60,
        )
        yield address
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def _canary_dsd(name: str, query: str, prometheus: str) -> dict[str, Any]:
    rollout = {
        "strategy": "Canary",
        "canary": {
            "steps": [{"weight": 30, "pause": "2s"}, {"weight": 60, "pause": "2s"}],
            "analysis": {
                "interval": "2s",
                "failureLimit": 2,
                "metrics": [{"name": "constant", "query": query, "max": 0.01}],
            },
        },
    }
    return dsd(
        name,
        MODEL,
        products=["L40S"],
        rollout=rollout,
        traffic={"istio": {}},
        monitoring={"prometheusAddress": prometheus},
    )


def _deployment(kube: Kube, namespace: str, name: str) -> dict[str, Any] | None:
    out = kube("get", "deployment", name, "-n", namespace, "-o", "json", check=False)
    return json.loads(out.stdout) if out.returncode == 0 else None


def _canary(kube: Kube, namespace: str, name: str) -> dict[str, Any]:
    return dict(get_dsd(kube, namespace, name).get("status", {}).get("canary") or {})


def _reasons(kube: Kube, namespace: str, name: str) -> list[str]:
    events = kube.json(
        "get", "events", "-n", namespace, "--field-selector", f"involvedObject.name={name}"
    )["items"]
    return [str(e["reason"]) for e in events]


def test_canary_promotes_on_passing_analysis_and_fails_on_failing(
    kube: Kube, operator: OperatorProcess, namespace: str, prometheus: str
) -> None:
    good, bad = "canary-good", "canary-bad"
    kube.apply(_canary_dsd(good, "vector(0.001)", prometheus), namespace)
    kube.apply(_canary_dsd(bad, "vector(1)", prometheus), namespace)
    old: dict[str, dict[str, Any]] = {}
    for name in (good, bad):
        wait_current(kube, namespace, name)
        dep = _deployment(kube, namespace, name)
        assert dep is not None
        old[name] = dep["spec"]["template"]
        assert not _canary(kube, namespace, name), "the first rollout is not a canary"
    patch = json.dumps({"spec": {"model": {"maxModelLen": 8192}}})
    for name in (good, bad):
        kube("patch", "dsd", name, "-n", namespace, "--type=merge", "-p", patch)

    weights: set[int] = set()

    def settled(name: str) -> dict[str, Any] | None:
        canary = _canary(kube, namespace, name)
        if canary.get("phase") == "Progressing":
            weights.add(int(canary.get("weight") or 0))
        return canary if canary.get("phase") in {"Succeeded", "Failed"} else None

    done = wait_for("good canary promoted", lambda: settled(good), 90)
    assert done["phase"] == "Succeeded", done
    assert done["stableRevision"] == done["revision"]
    assert done["lastAnalysis"]["passed"] and done["lastAnalysis"]["metrics"][0]["value"] == 0.001
    assert weights & {30, 60}, weights
    wait_for(
        "stable on the new revision, canary pruned",
        lambda: (
            (dep := _deployment(kube, namespace, good)) is not None
            and dep["spec"]["template"]["metadata"]["labels"][REVISION] == done["revision"]
            and _deployment(kube, namespace, f"{good}-canary") is None
        ),
        60,
    )
    assert {"CanaryStarted", "CanaryStepAdvanced", "CanaryPromoted"} <= set(
        _reasons(kube, namespace, good)
    )

    failed = wait_for("bad canary failed", lambda: settled(bad), 60)
    assert failed["phase"] == "Failed" and failed["weight"] == 0, failed
    assert failed["failures"] == 2 and not failed["lastAnalysis"]["passed"]
    assert "above max" in failed["lastAnalysis"]["metrics"][0]["message"]
    wait_for("bad canary pruned", lambda: _deployment(kube, namespace, f"{bad}-canary") is None, 60)
    stable = _deployment(kube, namespace, bad)
    assert stable is not None and stable["spec"]["template"] == old[bad]
    obj = get_dsd(kube, namespace, bad)
    degraded = next(c for c in obj["status"]["conditions"] if c["type"] == "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "CanaryFailed")
    assert "CanaryFailed" in _reasons(kube, namespace, bad)
