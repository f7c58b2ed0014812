"""Status fixtures of one DeepSeekDeployment over its lifecycle, written by the operator's code.

GitOps health (kstatus for Flux / kpt, the Lua check for Argo CD) is judged from
``status``, so the fixtures must be the shapes the operator really writes. Each step
below feeds facts (a planning outcome, live workloads, a canary record) to
:func:`deepseek_operator.controllers.status.compute_status`, chaining the previous status
the way the reconciler does, and wraps the result in a full object.

``python -m e2e.gitops.lifecycle`` rewrites ``e2e/gitops/fixtures/``;
``e2e/gitops/test_health.py`` fails when the committed files drift from this module.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from deepseek_operator.api.status import CanaryStatus, DeepSeekDeploymentStatus
from deepseek_operator.controllers.status import PlanOutcome, WorkloadState, compute_status

FIXTURES = Path(__file__).resolve().parent / "fixtures"
SAMPLE = Path(__file__).resolve().parents[2] / "manifests" / "samples" / "canary-istio-keda.yaml"
NOW = "2026-12-01T09:00:00Z"
ENDPOINT = "http://r1-qwen-14b.demo.svc:8000/v1"
PLAN = {
    "modelName": "deepseek-ai/DeepSeek-R1-Distill-Qwen-14B",
    "quantization": "bf16",
    "gpuProduct": "NVIDIA-L40S",
    "gpuMemoryMiB": 46068,
    "gpusPerReplica": 1,
    "nodesPerReplica": 1,
    "tensor": 1,
    "pipeline": 1,
    "expert": 1,
    "data": 1,
    "gpuSummary": "1xL40S",
    "layout": "1x1x1",
    "reasons": ["weights 27.5 GiB + KV for 4 x 16384 tokens fit one 45 GiB L40S"],
}
PLANNED = PlanOutcome(True, PLAN, "Planned", "1xL40S, TP1 PP1 EP1")
UNPLANNABLE = PlanOutcome(
    False,
    None,
    "PlanFailed",
    "no GPU pool fits: DeepSeek-R1-Distill-Qwen-14B needs 31 GiB per replica; "
    "placement.gpu.products [L4] offers 22 GiB: allow a larger GPU or set quantization: int8",
)


def deployment(name: str, desired: int, ready: int, updated: int, **kw: Any) -> WorkloadState:
    """A live Deployment as :func:`workload_state` summarises it."""
    return WorkloadState(
        kind="Deployment",
        name=name,
        desired=desired,
        current=desired,
        ready=ready,
        updated=updated,
        observed=kw.pop("observed", True),
        selector="deepseek.ai/deployment=r1-qwen-14b",
        **kw,
    )


STABLE_READY = deployment("r1-qwen-14b", 2, 2, 2)
CANARY_READY = deployment("r1-qwen-14b-canary", 1, 1, 1)


def canary(phase: str, weight: int, message: str, failures: int = 0) -> CanaryStatus:
    """The canary driver's record for one step."""
    return CanaryStatus.model_validate(
        {
            "revision": "7f3c2a9e",
            "stableRevision": "1b9d04c2",
            "step": 0,
            "weight": weight,
            "stepStarted": NOW,
            "failures": failures,
            "phase": phase,
            "message": message,
        }
    )


@dataclass(frozen=True)
class Step:
    """One lifecycle moment: the facts of a reconcile pass on top of an earlier step."""

    name: str
    """File stem, ordered (``03-rolling-out``)."""
    summary: str
    """What is happening, for the fixture's header comment and test ids."""
    after: str | None
    """The step whose status this pass starts from (None: a fresh object)."""
    generation: int
    pass_: Callable[[DeepSeekDeploymentStatus | None, int], DeepSeekDeploymentStatus] | None
    """The reconcile pass, or None to keep the earlier status as it is."""
    deleting: bool = False


def _reconcile(
    outcome: PlanOutcome | None,
    workloads: list[WorkloadState],
    canary_status: CanaryStatus | None = None,
) -> Callable[[DeepSeekDeploymentStatus | None, int], DeepSeekDeploymentStatus]:
    def run(current: DeepSeekDeploymentStatus | None, generation: int) -> DeepSeekDeploymentStatus:
        return compute_status(
            current,
            generation,
            outcome,
            workloads,
            now=NOW,
            endpoint=ENDPOINT,
            canary=canary_status,
        )

    return run


STEPS: tuple[Step, ...] = (
    Step("01-created", "applied, the operator has not written status yet", None, 1, None),
    Step("02-planned", "planned, no workload created yet", None, 1, _reconcile(PLANNED, [])),
    Step(
        "03-rolling-out",
        "Deployment created, 0/2 replicas ready",
        "02-planned",
        1,
        _reconcile(PLANNED, [deployment("r1-qwen-14b", 2, 0, 2)]),
    ),
    Step(
        "04-ready", "2/2 replicas ready", "03-rolling-out", 1, _reconcile(PLANNED, [STABLE_READY])
    ),
    Step("05-spec-changed", "spec edited, not yet observed", "04-ready", 2, None),
    Step(
        "06-canary-10",
        "canary at 10 % of traffic, analysis passing",
        "04-ready",
        2,
        _reconcile(
            PLANNED,
            [STABLE_READY, CANARY_READY],
            canary("Progressing", 10, "step 1/3: 10% of traffic on 7f3c2a9e"),
        ),
    ),
    Step(
        "07-canary-failed",
        "canary rolled back after failed analyses",
        "06-canary-10",
        2,
        _reconcile(
            PLANNED,
            [STABLE_READY],
            canary("Failed", 0, "rolled back: error-rate 4.2 > 1.0 in 3 analyses", 3),
        ),
    ),
    Step(
        "08-canary-promoted",
        "canary promoted, stable serves the new revision",
        "06-canary-10",
        2,
        _reconcile(PLANNED, [STABLE_READY], canary("Succeeded", 0, "promoted 7f3c2a9e")),
    ),
    Step(
        "09-unplannable",
        "new object whose spec fits no GPU pool",
        None,
        1,
        _reconcile(UNPLANNABLE, []),
    ),
    Step(
        "10-plan-failed-on-update",
        "spec edited to one that cannot be planned; the old plan keeps serving",
        "04-ready",
        3,
        _reconcile(UNPLANNABLE, [STABLE_READY]),
    ),
    Step(
        "11-rollout-stuck",
        "a workload exceeded its progress deadline",
        "04-ready",
        1,
        _reconcile(PLANNED, [deployment("r1-qwen-14b", 2, 1, 1, stalled=True)]),
    ),
    Step(
        "12-replicas-lost",
        "every replica became unready after serving",
        "04-ready",
        1,
        _reconcile(PLANNED, [deployment("r1-qwen-14b", 2, 0, 2)]),
    ),
    Step("13-deleting", "deleted, finalizer still held", "04-ready", 1, None, deleting=True),
)


def _object(
    spec: dict[str, Any], generation: int, status: DeepSeekDeploymentStatus | None, deleting: bool
) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "name": "r1-qwen-14b",
        "namespace": "demo",
        "generation": generation,
        "uid": "5b0e8f3a-0d1c-4c9e-9a47-3f1f2b6c8d10",
    }
    if deleting:
        metadata["deletionTimestamp"] = NOW
        metadata["finalizers"] = ["kopf.zalando.org/KopfFinalizerMarker"]
    obj: dict[str, Any] = {
        "apiVersion": "deepseek.ai/v1alpha1",
        "kind": "DeepSeekDeployment",
        "metadata": metadata,
        "spec": spec,
    }
    if status is not None:
        obj["status"] = status.to_k8s()
    return obj


def build() -> dict[str, dict[str, Any]]:
    """Every step's full object, by step name."""
    spec = yaml.safe_load(SAMPLE.read_text())["spec"]
    statuses: dict[str, DeepSeekDeploymentStatus | None] = {}
    objects: dict[str, dict[str, Any]] = {}
    for step in STEPS:
        before = statuses[step.after] if step.after else None
        start = before.model_copy(deep=True) if before is not None else None
        status = step.pass_(start, step.generation) if step.pass_ is not None else start
        statuses[step.name] = status
        objects[step.name] = _object(spec, step.generation, status, step.deleting)
    return objects


def render(step: Step, obj: dict[str, Any]) -> str:
    """The fixture file's text: a header naming the moment, then the object."""
    header = f"# {step.summary}. Generated by `python -m e2e.gitops.lifecycle`; do not edit.\n"
    return header + yaml.safe_dump(obj, sort_keys=False, width=100)


def main() -> int:
    FIXTURES.mkdir(exist_ok=True)
    objects = build()
    for step in STEPS:
        (FIXTURES / f"{step.name}.yaml").write_text(render(step, objects[step.name]))
    print(f"wrote {len(STEPS)} fixtures to {FIXTURES}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
