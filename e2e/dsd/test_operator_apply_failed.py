"""E2E: a child the apiserver refuses is reported on the DSD, and healed by a retry.

A ResourceQuota that allows no Deployments makes the apiserver's quota admission refuse
the DSD's Deployment (a 403), as in a namespace whose quota is used up. The DSD plans,
but the operator cannot apply the plan: it must say so (``Degraded=True`` and
``Ready=False`` with reason ``ApplyFailed`` and the apiserver's message, a Warning Event)
instead of looking merely slow while it retries. Once the quota is gone the retry
applies the children and the DSD becomes Current.
"""

from __future__ import annotations

from typing import Any

import pytest

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
MODEL = "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B"
QUOTA = {
    "apiVersion": "v1",
    "kind": "ResourceQuota",
    "metadata": {"name": "no-deployments"},
    "spec": {"hard": {"count/deployments.apps": "0"}},
}


def test_a_refused_child_is_degraded_with_the_reason_and_heals_after(
    kube: Kube, operator: OperatorProcess, namespace: str
) -> None:
    kube.apply(QUOTA, namespace)
    wait_for(
        "quota status computed",
        lambda: (
            kube.json("get", "resourcequota", "no-deployments", "-n", namespace)
            .get("status", {})
            .get("hard")
        ),
        60,
    )
    kube.apply(dsd("blocked", MODEL, products=["L40S"]), namespace)

    def refused() -> dict[str, Any] | None:
        obj = get_dsd(kube, namespace, "blocked")
        cond = find_condition(obj, "Degraded")
        return obj if cond and cond["reason"] == "ApplyFailed" else None

    obj = wait_for("Degraded=ApplyFailed", refused, 90)
    degraded, ready = condition(obj, "Degraded"), condition(obj, "Ready")
    assert degraded["status"] == "True" and "quota" in degraded["message"], degraded
    assert ready["status"] == "False" and ready["reason"] == "ApplyFailed", ready
    assert condition(obj, "Planned")["status"] == "True"
    assert obj["status"]["phase"] == "Degraded"
    assert not [c for c in children(kube, namespace, "blocked") if c["kind"] == "Deployment"]
    events = kube.json(
        "get", "events", "-n", namespace, "--field-selector", "involvedObject.name=blocked"
    )["items"]
    assert any(e["type"] == "Warning" and e["reason"] == "ApplyFailed" for e in events)

    kube("delete", "resourcequota", "no-deployments", "-n", namespace)
    healed = wait_current(kube, namespace, "blocked")  # the operator's retry applies it
    assert condition(healed, "Degraded")["status"] == "False"
    assert any(c["kind"] == "Deployment" for c in children(kube, namespace, "blocked"))
