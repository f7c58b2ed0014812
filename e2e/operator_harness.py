"""Runs the operator as a real subprocess against the local control plane.

Shared by the operator e2e tests (``e2e/dsd/``), the demo
(``e2e/demo_operator.py``) and the benchmark (``bench/operator_scale.py``):
install the CRDs, start / stop / SIGKILL the operator, count the API writes it
logs, read DSD status and wait for conditions.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

from deepseek_operator.api import API_VERSION, KIND
from deepseek_operator.render import LABEL_INSTANCE, LABEL_MANAGED_BY, MANAGED_BY
from e2e.devcluster.kube import kubectl as run_kubectl

ROOT = Path(__file__).resolve().parent.parent
CRD_DIR = ROOT / "crds"
SAMPLES_DIR = ROOT / "manifests" / "samples"
FIXTURES_DIR = Path(__file__).resolve().parent / "fixtures"
T = TypeVar("T")


def wait_for(
    what: str, probe: Callable[[], T | None], timeout: float = 90, interval: float = 0.5
) -> T:
    """Poll ``probe`` until it returns a truthy value; AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = probe()
        except Exception as exc:  # keep polling through transient errors
            last = exc
        if last and not isinstance(last, Exception):
            return cast(T, last)
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}: {last!r}")
        time.sleep(interval)


class Kube:
    """Kubectl bound to one kubeconfig (works without pytest fixtures)."""

    def __init__(self, kubectl_bin: Path, kubeconfig: Path) -> None:
        self.bin, self.kubeconfig = kubectl_bin, kubeconfig

    def __call__(
        self, *args: str, stdin: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        return run_kubectl(
            self.bin, self.kubeconfig, *args, stdin=stdin, check=check, timeout=timeout
        )

    def json(self, *args: str) -> Any:
        return json.loads(self(*args, "-o", "json").stdout)

    def apply(
        self,
        obj: dict[str, Any] | list[dict[str, Any]],
        namespace: str | None = None,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        doc = obj if isinstance(obj, dict) else {"apiVersion": "v1", "kind": "List", "items": obj}
        args = ["apply", "-f", "-"] + (["-n", namespace] if namespace else [])
        return self(*args, stdin=json.dumps(doc), check=check)


def install_crds(kube: Kube) -> None:
    """Server-side apply the generated CRDs from ``crds/`` and wait until established."""
    files = sorted(p for p in CRD_DIR.glob("*.yaml") if p.name != "kustomization.yaml")
    if not files:
        raise RuntimeError(f"no CRD in {CRD_DIR}: run `deepseek-operator crd`")
    args = ["apply", "--server-side", "--force-conflicts", "--field-manager=e2e"]
    for f in files:
        args += ["-f", str(f)]
    kube(*args)
    kube(
        "wait",
        "--for=condition=Established",
        "crd/deepseekdeployments.deepseek.ai",
        "--timeout=60s",
    )


class OperatorProcess:
    """``python -m deepseek_operator.controllers`` as a child process, logs to a file."""

    def __init__(
        self,
        kubeconfig: Path,
        log_path: Path,
        *extra: str,
        resync_seconds: float = 5.0,
        namespaces: tuple[str, ...] = (),
    ) -> None:
        self.kubeconfig = kubeconfig
        self.log_path = log_path
        self.args = [
            sys.executable,
            "-m",
            "deepseek_operator.controllers",
            "--kubeconfig",
            str(kubeconfig),
            "--standalone",
            f"--resync-seconds={resync_seconds}",
            "--log-format=json",
            *(f"--namespace={ns}" for ns in namespaces),
            *extra,
        ]
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    def start(self) -> OperatorProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            self.args, stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=ROOT
        )
        return self

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError("operator not started")
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _close(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM and wait (kopf stops gracefully); SIGKILL if it hangs."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._close()

    def kill(self) -> None:
        """SIGKILL: no cleanup, no graceful stop."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self._close()

    def log_lines(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if not self.log_path.exists():
            return out
        decoder = json.JSONDecoder()
        for line in self.log_path.read_text(errors="replace").splitlines():
            pos = line.find("{")
            while pos != -1:  # tolerate two records on one line
                try:
                    record, end = decoder.raw_decode(line, pos)
                except ValueError:
                    break
                if isinstance(record, dict):
                    out.append(record)
                pos = line.find("{", end)
        return out

    def writes(self) -> list[dict[str, Any]]:
        """Every API write the operator logged (applies, deletes, status patches)."""
        return [r for r in self.log_lines() if r.get("event") == "api_write"]

    def mark(self) -> int:
        """A position in the log; pass to :meth:`writes_since`."""
        return len(self.log_lines())

    def writes_since(self, mark: int) -> list[dict[str, Any]]:
        return [r for r in self.log_lines()[mark:] if r.get("event") == "api_write"]

    def wait_started(self, timeout: float = 60) -> None:
        def started() -> bool:
            if not self.alive():
                raise RuntimeError(f"operator exited; see {self.log_path}")
            return any(r.get("event") == "starting" for r in self.log_lines())

        wait_for("operator start", started, timeout)


def find_condition(dsd: dict[str, Any], ctype: str) -> dict[str, Any] | None:
    """The condition of that type, or None when the status has none yet."""
    for cond in (dsd.get("status") or {}).get("conditions") or []:
        if cond.get("type") == ctype:
            return dict(cond)
    return None


def condition(dsd: dict[str, Any], ctype: str) -> dict[str, Any]:
    """The condition of that type; fails the test when it is missing."""
    cond = find_condition(dsd, ctype)
    if cond is None:
        raise AssertionError(f"no {ctype} condition in status: {dsd.get('status')!r}")
    return cond


def is_true(dsd: dict[str, Any], ctype: str) -> bool:
    cond = find_condition(dsd, ctype)
    return bool(cond and cond.get("status") == "True")


def current(dsd: dict[str, Any]) -> bool:
    """kstatus ``Current``: observedGeneration caught up and Ready=True."""
    st = dsd.get("status") or {}
    return st.get("observedGeneration") == dsd["metadata"].get("generation") and is_true(
        dsd, "Ready"
    )


def dsd(
    name: str,
    model: str,
    *,
    products: list[str] | None = None,
    replicas: int | None = 1,
    **spec: Any,
) -> dict[str, Any]:
    """A DeepSeekDeployment manifest for tests (catalog model, Hugging Face source)."""
    body: dict[str, Any] = {
        "model": {"name": model, "source": {"uri": f"hf://{model}"}},
        **spec,
    }
    if replicas is not None:
        body["replicas"] = replicas
    if products:
        body.setdefault("placement", {}).setdefault("gpu", {})["products"] = products
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": name},
        "spec": body,
    }


CHILD_KINDS = (
    "deployments.apps",
    "leaderworkersets.leaderworkerset.x-k8s.io",
    "services",
    "horizontalpodautoscalers.autoscaling",
    "scaledobjects.keda.sh",
    "poddisruptionbudgets.policy",
    "networkpolicies.networking.k8s.io",
    "virtualservices.networking.istio.io",
    "destinationrules.networking.istio.io",
    "servicemonitors.monitoring.coreos.com",
    "prometheusrules.monitoring.coreos.com",
    "configmaps",
)


def children(kube: Kube, namespace: str, name: str | None = None) -> list[dict[str, Any]]:
    """Every object the operator manages in ``namespace`` (of DSD ``name`` if given)."""
    selector = f"{LABEL_MANAGED_BY}={MANAGED_BY}"
    if name:
        selector += f",{LABEL_INSTANCE}={name}"
    out = kube.json("get", ",".join(CHILD_KINDS), "-n", namespace, "-l", selector)
    return list(out.get("items", []))


def pods_by_pool(kube: Kube, namespace: str, selector: str) -> dict[str, str]:
    """Pod name → pool label of the node it runs on (``''`` when not scheduled)."""
    pods = kube.json("get", "pods", "-n", namespace, "-l", selector)["items"]
    nodes = {
        n["metadata"]["name"]: n["metadata"].get("labels", {})
        for n in kube.json("get", "nodes")["items"]
    }
    return {
        p["metadata"]["name"]: nodes.get(p["spec"].get("nodeName", ""), {}).get(
            "deepseek.ai/pool", ""
        )
        for p in pods
    }


def get_dsd(kube: Kube, namespace: str, name: str) -> dict[str, Any]:
    return dict(kube.json("get", "dsd", name, "-n", namespace))


def wait_current(kube: Kube, namespace: str, name: str, timeout: float = 120) -> dict[str, Any]:
    """Wait until the DSD is kstatus-Current (Ready for its latest generation)."""

    def ready() -> dict[str, Any] | None:
        obj = get_dsd(kube, namespace, name)
        return obj if current(obj) else None

    try:
        return wait_for(f"dsd/{name} Ready", ready, timeout)
    except AssertionError:
        print(json.dumps(get_dsd(kube, namespace, name).get("status"), indent=1))
        raise


class Scope:
    """Namespaces of one test module, served by that module's operator only.

    Operators of concurrent test sessions on the same cluster watch disjoint namespace
    globs (``<prefix>-*``), so they never reconcile each other's objects.
    """

    def __init__(self, kube: Kube, prefix: str | None = None) -> None:
        self.kube = kube
        self.prefix = prefix or f"op-{uuid.uuid4().hex[:6]}"
        self.pattern = f"{self.prefix}-*"

    def new_namespace(self) -> str:
        name = f"{self.prefix}-{uuid.uuid4().hex[:6]}"
        self.kube("create", "namespace", name)
        return name

    def delete_namespace(self, name: str, wait: float = 30) -> None:
        """Delete the DSDs (while an operator may still finalize them), then the namespace."""
        self.kube("delete", "dsd", "--all", "-n", name, "--wait=false", check=False)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            left = self.kube.json("get", "dsd", "-n", name)["items"]
            if not left:
                break
            time.sleep(0.5)
        else:  # no operator left to finalize them
            for item in self.kube.json("get", "dsd", "-n", name)["items"]:
                self.kube(
                    "patch",
                    "dsd",
                    item["metadata"]["name"],
                    "-n",
                    name,
                    "--type=merge",
                    "-p",
                    '{"metadata":{"finalizers":null}}',
                    check=False,
                )
        self.kube("delete", "namespace", name, "--wait=false", check=False)
