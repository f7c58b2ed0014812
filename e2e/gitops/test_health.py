"""kstatus (sigs.k8s.io/cli-utils) and the Argo CD Lua health check agree on a DSD's lifecycle.

The fixtures are statuses the operator's own ``compute_status`` writes (see
:mod:`e2e.gitops.lifecycle`); the last test drives one live object through the operator on
the local cluster. ``LIFECYCLE`` is the contract: what a GitOps tool must conclude at each
moment. Where the operator's status does not yet let kstatus conclude it, the case is a
strict xfail naming the gap, so it turns into a failure the day the gap closes.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.devcluster.kube import KubectlError
from e2e.gitops import lifecycle
from e2e.gitops.health import (
    ARGO_FOR_KSTATUS,
    LUA_BIN,
    LUA_SCRIPT,
    argo_health,
    kstatus,
    kstatus_binary,
)
from e2e.operator_harness import Kube, OperatorProcess, dsd, get_dsd, wait_for

LIFECYCLE: dict[str, tuple[str, str | None]] = {
    # step: (kstatus status a GitOps tool must see, known gap or None)
    "01-created": ("Current", None),  # kstatus: an object without status is Current
    "02-planned": ("InProgress", None),
    "03-rolling-out": ("InProgress", None),
    "04-ready": ("Current", None),
    "05-spec-changed": ("InProgress", None),
    "06-canary-10": ("InProgress", None),  # Reconciling=True while traffic shifts
    "07-canary-failed": ("Current", None),  # the stable revision serves; Degraded explains
    "08-canary-promoted": ("Current", None),
    "09-unplannable": ("Failed", None),
    "10-plan-failed-on-update": ("Failed", None),
    "11-rollout-stuck": ("Failed", None),  # Stalled=True past the progress deadline
    "12-replicas-lost": ("InProgress", None),
    "13-deleting": ("Terminating", None),
}


@pytest.fixture(scope="module")
def kstatus_bin() -> Path:
    return kstatus_binary()


@pytest.fixture(scope="module", autouse=True)
def _lua() -> None:
    if not LUA_BIN.is_file():
        pytest.fail(f"{LUA_BIN} is missing: run `make system-deps` (Debian's lua5.4)")


def _cases() -> list[Any]:
    cases = []
    for step in lifecycle.STEPS:
        want, gap = LIFECYCLE[step.name]
        marks = [pytest.mark.xfail(reason=gap, strict=True)] if gap else []
        cases.append(pytest.param(step.name, want, id=step.name, marks=marks))
    return cases


@pytest.mark.unit
def test_every_step_has_an_expectation() -> None:
    assert [s.name for s in lifecycle.STEPS] == list(LIFECYCLE)


@pytest.mark.unit
def test_fixtures_are_what_the_operator_writes() -> None:
    objects = lifecycle.build()
    for step in lifecycle.STEPS:
        committed = (lifecycle.FIXTURES / f"{step.name}.yaml").read_text()
        assert committed == lifecycle.render(step, objects[step.name]), (
            f"{step.name}.yaml drifted from the operator's status code: "
            "run `python -m e2e.gitops.lifecycle`"
        )


@pytest.mark.unit
@pytest.mark.parametrize("step", [s.name for s in lifecycle.STEPS])
def test_kstatus_and_argo_agree(kstatus_bin: Path, step: str) -> None:
    path = lifecycle.FIXTURES / f"{step}.yaml"
    k_status, _ = kstatus(kstatus_bin, path)
    a_status, a_message = argo_health(yaml.safe_load(path.read_text()))
    assert ARGO_FOR_KSTATUS[k_status] == a_status, f"kstatus {k_status}, Argo {a_status}"
    assert a_message


@pytest.mark.unit
@pytest.mark.parametrize(("step", "want"), _cases())
def test_lifecycle_reads_as_intended(kstatus_bin: Path, step: str, want: str) -> None:
    k_status, message = kstatus(kstatus_bin, lifecycle.FIXTURES / f"{step}.yaml")
    assert k_status == want, message


@pytest.mark.unit
def test_argo_message_says_what_to_change() -> None:
    obj = yaml.safe_load((lifecycle.FIXTURES / "09-unplannable.yaml").read_text())
    assert argo_health(obj) == ("Degraded", lifecycle.UNPLANNABLE.message)


@pytest.mark.unit
def test_argocd_configmap_ships_the_tested_script() -> None:
    cm = yaml.safe_load((LUA_SCRIPT.parent / "argocd-cm-health.yaml").read_text())
    key = "resource.customizations.health.deepseek.ai_DeepSeekDeployment"
    assert cm["data"][key] == LUA_SCRIPT.read_text()


@pytest.mark.unit
def test_kstatus_reads_a_list_from_stdin(kstatus_bin: Path) -> None:
    ready = yaml.safe_load((lifecycle.FIXTURES / "04-ready.yaml").read_text())
    failed = yaml.safe_load((lifecycle.FIXTURES / "09-unplannable.yaml").read_text())
    out = subprocess.run(
        [str(kstatus_bin), "-"],
        input=json.dumps({"apiVersion": "v1", "kind": "List", "items": [ready, failed]}),
        capture_output=True,
        text=True,
        check=True,
    )
    lines = out.stdout.splitlines()
    assert [line.split(" ")[1] for line in lines] == ["Current", "Failed"]


def _observe(
    kube: Kube, namespace: str, name: str, kstatus_bin: Path, seen: list[tuple[str, str]]
) -> tuple[str, bool]:
    """Read the live DSD, run both checks, record the pair.

    Returns kstatus's verdict and whether the operator's status describes the latest
    generation (an object without status reads Current too: see ``01-created``).
    """
    obj = get_dsd(kube, namespace, name)
    pair = (kstatus(kstatus_bin, obj)[0], argo_health(obj)[0])
    if not seen or seen[-1] != pair:
        seen.append(pair)
    observed = (obj.get("status") or {}).get("observedGeneration")
    return pair[0], observed == obj["metadata"]["generation"]


@pytest.mark.e2e
def test_live_object_through_its_lifecycle(
    kube: Kube, namespace: str, operator: OperatorProcess, kstatus_bin: Path
) -> None:
    name = "gitops-health"
    seen: list[tuple[str, str]] = []

    def reaches(status: str) -> bool | None:
        verdict, observed = _observe(kube, namespace, name, kstatus_bin, seen)
        return True if verdict == status and observed else None

    kube.apply(dsd(name, "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B", products=["L40S"]), namespace)
    wait_for("kstatus Current", lambda: reaches("Current"), 120, interval=0.2)

    # More replicas than the L40S pool has GPUs: the rollout cannot complete.
    kube("scale", "dsd", name, "-n", namespace, "--replicas=64")
    wait_for("kstatus InProgress", lambda: reaches("InProgress"), 60, interval=0.2)

    # An edit the planner cannot satisfy: a GPU product no node has.
    kube(
        "patch",
        "dsd",
        name,
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"spec":{"placement":{"gpu":{"products":["B200"]}}}}',
    )
    wait_for("kstatus Failed", lambda: reaches("Failed"), 60, interval=0.2)

    kube("delete", "dsd", name, "-n", namespace, "--wait=false")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and kube.json("get", "dsd", "-n", namespace)["items"]:
        try:
            _observe(kube, namespace, name, kstatus_bin, seen)
        except KubectlError:  # gone between the list and the get
            break
        time.sleep(0.2)

    print("kstatus/Argo over the live lifecycle:", " -> ".join(f"{k}/{a}" for k, a in seen))
    assert all(ARGO_FOR_KSTATUS[k] == a for k, a in seen), seen
    verdicts = [k for k, _ in seen]
    assert verdicts.index("Failed") > verdicts.index("InProgress") > verdicts.index("Current")
    assert set(verdicts) <= {"InProgress", "Current", "Failed", "Terminating"}
