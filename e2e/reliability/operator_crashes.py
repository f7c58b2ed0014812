"""Operator-crash suite: SIGKILL the operator at random points of create, update, scale and
canary steps, restart it, and check that it converges with exactly the children it should.

One namespace, the operator as a real subprocess (``e2e.operator_harness``) against the
local cluster's real apiserver. Before the trials two reference DSDs converge with no
kill (a plain one and a ``rollout.strategy: Canary`` one gated by a real Prometheus);
their children are the expected shapes. Each trial then:

1. applies one step: ``create`` (a new plain DSD), ``update`` (a pod-template change of
   the newest plain DSD), ``scale`` (its replicas 1 <-> 2) or ``canary`` (a template
   change of the canary DSD: a canary rollout with two weighted steps and analysis);
2. SIGKILLs the operator after a random delay (seeded) — before, during or after its
   writes for that step — and starts a fresh one;
3. waits until every DSD is kstatus-Current for its latest generation (the canary one
   also promoted, its canary Deployment pruned, the stable one on the new revision);
4. checks the namespace: every managed child is owned by a live DSD (matching uid: no
   orphans), each DSD has the reference shape of children (no duplicates), and every
   Deployment has the replicas its DSD asks for.

The report counts kills, convergences and problems per step.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from e2e.operator_harness import (
    Kube,
    OperatorProcess,
    children,
    dsd,
    get_dsd,
    wait_current,
    wait_for,
)

MODEL = "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B"
REVISION = "deepseek.ai/revision"
STEPS = ("create", "update", "scale", "canary")
MAX_DELAY_S = {"create": 2.0, "update": 2.0, "scale": 2.0, "canary": 8.0}


@dataclass
class CrashTrial:
    step: str
    delay_s: float
    writes_before_kill: int
    converged: bool = False
    seconds_to_converge: float | None = None
    problems: list[str] = field(default_factory=list)


@dataclass
class OperatorCrashReport:
    trials: list[CrashTrial] = field(default_factory=list)

    @property
    def kills(self) -> int:
        return len(self.trials)

    @property
    def converged(self) -> int:
        return sum(t.converged and not t.problems for t in self.trials)

    def to_json(self) -> dict[str, Any]:
        times = sorted(t.seconds_to_converge for t in self.trials if t.seconds_to_converge)
        by_step: dict[str, dict[str, int]] = {}
        for t in self.trials:
            row = by_step.setdefault(t.step, {"kills": 0, "converged": 0})
            row["kills"] += 1
            row["converged"] += int(t.converged and not t.problems)
        return {
            "kills": self.kills,
            "converged": self.converged,
            "by_step": by_step,
            "kills_mid_writes": sum(t.writes_before_kill > 0 for t in self.trials),
            "converge_seconds_max": round(times[-1], 2) if times else None,
            "converge_seconds_median": round(times[len(times) // 2], 2) if times else None,
            "problems": [f"{t.step}: {p}" for t in self.trials for p in t.problems],
        }


def canary_rollout(prometheus: str) -> dict[str, Any]:
    """A canary with two weighted steps whose analysis (constant PromQL) passes."""
    return {
        "rollout": {
            "strategy": "Canary",
            "canary": {
                "steps": [{"weight": 30, "pause": "1s"}, {"weight": 60, "pause": "1s"}],
                "analysis": {
                    "interval": "1s",
                    "failureLimit": 2,
                    "metrics": [{"name": "constant", "query": "vector(0.001)", "max": 0.01}],
                },
            },
        },
        "traffic": {"istio": {}},
        "monitoring": {"prometheusAddress": prometheus},
    }


def _shape(kube: Kube, namespace: str, name: str) -> Counter[str]:
    return Counter(c["kind"] for c in children(kube, namespace, name))


class CrashRunner:
    """Runs the trials of one plan in ``namespace``, watched by operators of ``pattern``."""

    def __init__(
        self,
        kube: Kube,
        kubeconfig: Path,
        pattern: str,
        namespace: str,
        *,
        log_dir: Path,
        prometheus: str,
        seed: int = 13,
        converge_timeout: float = 120.0,
    ) -> None:
        self.kube, self.kubeconfig, self.pattern = kube, kubeconfig, pattern
        self.namespace, self.log_dir, self.prometheus = namespace, log_dir, prometheus
        self.rng = random.Random(seed)
        self.converge_timeout = converge_timeout
        self.operator: OperatorProcess | None = None
        self.plain: list[str] = []
        self.replicas: dict[str, int] = {}
        self.shapes: dict[str, Counter[str]] = {}
        self.variant: dict[str, str] = {}
        self.max_model_len = 4096
        self._starts = 0

    # -- operator -------------------------------------------------------------------
    def start_operator(self) -> OperatorProcess:
        self._starts += 1
        op = OperatorProcess(
            self.kubeconfig,
            self.log_dir / f"operator-{self._starts}.log",
            resync_seconds=2,
            namespaces=(self.pattern,),
        ).start()
        op.wait_started()
        self.operator = op
        return op

    def stop(self) -> None:
        if self.operator is not None:
            self.operator.stop()
            self.operator = None

    def tracebacks(self) -> list[str]:
        """Log lines of every operator this runner started that carry a traceback."""
        found = []
        for i in range(1, self._starts + 1):
            path = self.log_dir / f"operator-{i}.log"
            if path.exists():
                text = path.read_text(errors="replace")
                found += [ln[:300] for ln in text.splitlines() if "Traceback" in ln]
        return found

    # -- set-up ---------------------------------------------------------------------
    def prepare(self) -> None:
        """The reference DSDs, converged with no kill; their shapes are the expectation."""
        op = self.operator or self.start_operator()
        del op
        self.kube.apply(dsd("ref", MODEL, products=["A100"]), self.namespace)
        canary = dsd("canary", MODEL, products=["L40S"], **canary_rollout(self.prometheus))
        self.kube.apply(canary, self.namespace)
        for name, variant in (("ref", "plain"), ("canary", "canary")):
            wait_current(self.kube, self.namespace, name, self.converge_timeout)
            self.shapes[variant] = _shape(self.kube, self.namespace, name)
            self.variant[name] = variant
            self.replicas[name] = 1
        self.plain.append("ref")

    # -- steps ----------------------------------------------------------------------
    def _apply_step(self, step: str, index: int) -> str:
        ns = self.namespace
        if step == "create":
            name = f"c{index}"
            self.kube.apply(dsd(name, MODEL, products=["A100"]), ns)
            self.plain.append(name)
            self.variant[name] = "plain"
            self.replicas[name] = 1
            return name
        if step in ("update", "canary"):
            name = self.plain[-1] if step == "update" else "canary"
            self.max_model_len += 512
            patch = {"spec": {"model": {"maxModelLen": self.max_model_len}}}
            self.kube("patch", "dsd", name, "-n", ns, "--type=merge", "-p", json.dumps(patch))
            return name
        if step == "scale":
            name = self.plain[-1]
            self.replicas[name] = 3 - self.replicas[name]
            self.kube("scale", "dsd", name, "-n", ns, f"--replicas={self.replicas[name]}")
            return name
        raise ValueError(f"unknown step {step!r}")

    def _deployment(self, name: str) -> dict[str, Any] | None:
        out = self.kube("get", "deployment", name, "-n", self.namespace, "-o", "json", check=False)
        return json.loads(out.stdout) if out.returncode == 0 else None

    def _canary_settled(self) -> bool:
        obj = get_dsd(self.kube, self.namespace, "canary")
        canary = (obj.get("status") or {}).get("canary") or {}
        if canary and canary.get("phase") != "Succeeded":
            return False
        stable = self._deployment("canary")
        if stable is None or self._deployment("canary-canary") is not None:
            return False
        if not canary:
            return True
        labels = stable["spec"]["template"]["metadata"].get("labels", {})
        return bool(labels.get(REVISION) == canary.get("revision"))

    def _converge(self) -> None:
        for name in self.variant:
            wait_current(self.kube, self.namespace, name, self.converge_timeout)
        wait_for("canary promoted and pruned", self._canary_settled, self.converge_timeout)

    def _check(self) -> list[str]:
        problems: list[str] = []
        live = {
            o["metadata"]["name"]: o["metadata"]["uid"]
            for o in self.kube.json("get", "dsd", "-n", self.namespace)["items"]
        }
        per_dsd: dict[str, Counter[str]] = {n: Counter() for n in live}
        for child in children(self.kube, self.namespace):
            owners = child["metadata"].get("ownerReferences") or []
            what = f"{child['kind']}/{child['metadata']['name']}"
            if len(owners) != 1 or owners[0].get("kind") != "DeepSeekDeployment":
                problems.append(f"{what} has owners {owners}")
                continue
            owner = owners[0]["name"]
            if live.get(owner) != owners[0].get("uid"):
                problems.append(f"orphan {what} (owner {owner})")
                continue
            per_dsd[owner][child["kind"]] += 1
        for name, shape in per_dsd.items():
            expected = self.shapes[self.variant[name]]
            if shape != expected:
                problems.append(f"{name}: children {dict(shape)} != {dict(expected)}")
            dep = self._deployment(name)
            want = self.replicas[name]
            if dep is None or dep["spec"].get("replicas") != want:
                got = None if dep is None else dep["spec"].get("replicas")
                problems.append(f"{name}: Deployment replicas {got} != {want}")
        return problems

    def trial(self, step: str, index: int) -> CrashTrial:
        op = self.operator or self.start_operator()
        mark = op.mark()
        delay = round(self.rng.uniform(0.0, MAX_DELAY_S[step]), 3)
        self._apply_step(step, index)
        time.sleep(delay)
        writes = len(op.writes_since(mark))
        op.kill()
        self.operator = None
        result = CrashTrial(step, delay, writes)
        started = time.monotonic()
        self.start_operator()
        try:
            self._converge()
            result.converged = True
            result.seconds_to_converge = time.monotonic() - started
        except AssertionError as exc:
            result.problems.append(f"did not converge: {str(exc)[:300]}")
        result.problems += self._check()
        return result

    def run(self, plan: list[str]) -> OperatorCrashReport:
        report = OperatorCrashReport()
        for index, step in enumerate(plan):
            report.trials.append(self.trial(step, index))
        return report


def plan_of(kills: int) -> list[str]:
    """``kills`` steps, cycling through create, update, scale and canary."""
    return [STEPS[i % len(STEPS)] for i in range(kills)]
