"""Demo: the operator serving the sample DeepSeekDeployments on the local control plane.

``python -m e2e.demo_operator`` ensures the kwok cluster, installs the CRD, runs the
operator in the background, applies the samples (``manifests/samples/``, or the e2e
fixtures when there are none), waits for them, and prints ``kubectl get dsd``, each
plan with its reasons, where every pod landed (node → GPU pool), one ``kubectl describe
dsd`` (conditions and the events that explain each decision) and the alert rules the
operator rendered for it. The operator is stopped at the end; the cluster stays up
(``python -m e2e.devcluster down`` removes it).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from e2e.devcluster import ensure_cluster
from e2e.lws_controller import LwsUnavailableError, lws_controller
from e2e.operator_harness import (
    FIXTURES_DIR,
    SAMPLES_DIR,
    Kube,
    OperatorProcess,
    current,
    find_condition,
    install_crds,
)

NAMESPACE = "deepseek-demo"


def sample_files() -> list[Path]:
    files = sorted(SAMPLES_DIR.glob("*.yaml")) if SAMPLES_DIR.is_dir() else []
    return files or sorted(FIXTURES_DIR.glob("*.yaml"))


def load_samples(files: list[Path]) -> list[dict[str, Any]]:
    docs = []
    for f in files:
        for doc in yaml.safe_load_all(f.read_text()):
            if doc and doc.get("kind") == "DeepSeekDeployment":
                doc.setdefault("metadata", {}).pop("namespace", None)
                docs.append(doc)
    return docs


def _refs(node: Any, key: str) -> list[dict[str, Any]]:
    """Every ``{key: {name, key?}}`` reference anywhere under ``node``."""
    out: list[dict[str, Any]] = []
    if isinstance(node, dict):
        for k, v in node.items():
            if k == key and isinstance(v, dict) and "name" in v:
                out.append(v)
            else:
                out += _refs(v, key)
    elif isinstance(node, list):
        for item in node:
            out += _refs(item, key)
    return out


def create_referenced_config(kube: Kube, docs: list[dict[str, Any]]) -> None:
    """Placeholders for what the samples reference: Secrets (tokens, API keys), ConfigMaps
    (content policy) and the claims behind ``pvc://`` model sources."""
    for doc in docs:
        for ref in _refs(doc, "secretRef") + _refs(doc, "apiKeysSecretRef"):
            kube(
                "create",
                "secret",
                "generic",
                ref["name"],
                "-n",
                NAMESPACE,
                f"--from-literal={ref.get('key') or 'token'}=demo-placeholder",
                check=False,
            )
        uri = str(doc["spec"].get("model", {}).get("source", {}).get("uri", ""))
        if uri.startswith("pvc://"):  # weights the user pre-loaded into a claim
            claim = {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {"name": uri[len("pvc://") :].split("/", 1)[0], "namespace": NAMESPACE},
                "spec": {
                    "accessModes": ["ReadOnlyMany"],
                    "storageClassName": "",
                    "resources": {"requests": {"storage": "1Ti"}},
                },
            }
            kube.apply(claim, check=False)
        for ref in _refs(doc, "configMapRef"):
            kube(
                "create",
                "configmap",
                ref["name"],
                "-n",
                NAMESPACE,
                f"--from-literal={ref.get('key') or 'policy'}=demo-placeholder",
                check=False,
            )


def bind_pending_claims(kube: Kube) -> int:
    """Statically provision a PV for each Pending PVC (the local cluster has no provisioner).

    Stands in for the shared NFS/RWX weight cache a real cluster provides; the PV is
    pre-bound to its claim with ``claimRef``. Returns the number of PVs created.
    """
    created = 0
    for pv in kube.json("get", "pv", "-l", "deepseek.ai/demo=true")["items"]:
        if (pv.get("status") or {}).get("phase") == "Released":  # claim of an earlier demo
            kube("delete", "pv", pv["metadata"]["name"], "--wait=false", check=False)
    for pvc in kube.json("get", "pvc", "-n", NAMESPACE)["items"]:
        if (pvc.get("status") or {}).get("phase") != "Pending":
            continue
        name = f"demo-{pvc['metadata']['name']}"[:54] + f"-{pvc['metadata']['uid'][:8]}"
        pv = {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": name, "labels": {"deepseek.ai/demo": "true"}},
            "spec": {
                "capacity": {"storage": pvc["spec"]["resources"]["requests"]["storage"]},
                "accessModes": pvc["spec"].get("accessModes", ["ReadWriteOnce"]),
                "storageClassName": pvc["spec"].get("storageClassName") or "",
                "persistentVolumeReclaimPolicy": "Retain",
                "hostPath": {"path": f"/var/cache/deepseek-demo/{name}"},
                "claimRef": {
                    "namespace": NAMESPACE,
                    "name": pvc["metadata"]["name"],
                    "uid": pvc["metadata"]["uid"],
                },
            },
        }
        if kube.apply(pv, check=False).returncode == 0:
            created += 1
    return created


def ensure_namespace(kube: Kube, timeout: float = 120) -> None:
    """Create the demo namespace; if a previous one is still terminating (the running
    operator finalizes its DSDs), wait for it to go first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        proc = kube("get", "namespace", NAMESPACE, "-o", "jsonpath={.status.phase}", check=False)
        if proc.returncode != 0:
            kube("create", "namespace", NAMESPACE)
            return
        if proc.stdout.strip() == "Active":
            return
        time.sleep(2)
    raise TimeoutError(f"namespace {NAMESPACE} is still terminating after {timeout:.0f}s")


def settled(obj: dict[str, Any]) -> bool:
    """Ready, or as far as this cluster can take it (plan failed / waiting on LWS)."""
    planned = find_condition(obj, "Planned")
    if planned and planned["status"] == "False":
        return True
    return current(obj)


def print_plans(kube: Kube, names: list[str]) -> None:
    for name in names:
        obj = kube.json("get", "dsd", name, "-n", NAMESPACE)
        st = obj.get("status") or {}
        plan = st.get("plan") or {}
        ready = find_condition(obj, "Ready") or {}
        print(
            f"\n== {name}: phase={st.get('phase')} ready={ready.get('status')} "
            f"({ready.get('reason')}: {ready.get('message')})"
        )
        if plan:
            print(
                f"   plan: {plan.get('gpuSummary')} TPxPPxEP={plan.get('layout')} "
                f"weights/GPU={plan.get('weightBytesPerGpu', 0) / 2**30:.1f} GiB "
                f"KV/GPU={plan.get('kvCacheBytesPerGpu', 0) / 2**30:.1f} GiB "
                f"tokens in cache={plan.get('maxTokensInCache')}"
            )
            for reason in plan.get("reasons", []):
                print(f"   - {reason}")
        else:
            planned = find_condition(obj, "Planned") or {}
            print(f"   not planned: {planned.get('message')}")


def print_placement(kube: Kube) -> None:
    pods = kube.json("get", "pods", "-n", NAMESPACE)["items"]
    nodes = {
        n["metadata"]["name"]: n["metadata"].get("labels", {})
        for n in kube.json("get", "nodes")["items"]
    }
    print("\npod placement (pod -> node -> pool, GPU product):")
    for pod in sorted(pods, key=lambda p: p["metadata"]["name"]):
        node = pod["spec"].get("nodeName", "")
        labels = nodes.get(node, {})
        gpus = (
            pod["spec"]["containers"][0]
            .get("resources", {})
            .get("limits", {})
            .get("nvidia.com/gpu", "0")
        )
        print(
            f"  {pod['metadata']['name']:<44} {node or '<pending>':<14} "
            f"{labels.get('deepseek.ai/pool', '-'):<6} "
            f"{labels.get('nvidia.com/gpu.product', '-')} x{gpus} "
            f"[{pod['status'].get('phase')}]"
        )
    lws = kube.json("get", "leaderworkersets", "-n", NAMESPACE)["items"]
    for item in lws:
        st = item.get("status") or {}
        print(
            f"  LeaderWorkerSet {item['metadata']['name']}: size="
            f"{item['spec']['leaderWorkerTemplate']['size']} "
            f"replicas={item['spec'].get('replicas')}"
            f" readyReplicas={st.get('readyReplicas', 0)}"
            + ("" if st else " (no LWS controller in this cluster: no pods yet)")
        )


def describe_one(kube: Kube, names: list[str]) -> None:
    """``kubectl describe`` of the first Ready DSD, then its PrometheusRule's alerts."""
    ready = [n for n in names if current(kube.json("get", "dsd", n, "-n", NAMESPACE))]
    if not ready:
        return
    name = ready[0]
    print(f"\n$ kubectl describe dsd {name} -n {NAMESPACE}")
    print(kube("describe", "dsd", name, "-n", NAMESPACE).stdout)
    selector = f"app.kubernetes.io/instance={name}"
    proc = kube(
        "get", "prometheusrules", "-n", NAMESPACE, "-l", selector, "-o", "json", check=False
    )
    if proc.returncode != 0:
        print(f"(no PrometheusRule API in this cluster: {proc.stderr.strip()})")
        return
    for rule_obj in yaml.safe_load(proc.stdout)["items"]:
        print(f"alert rules rendered for {name} (PrometheusRule {rule_obj['metadata']['name']}):")
        for group in rule_obj["spec"]["groups"]:
            for rule in group["rules"]:
                labels, notes = rule.get("labels", {}), rule.get("annotations", {})
                severity, wait = labels.get("severity", "-"), rule.get("for", "0s")
                print(f"  {rule['alert']} [{severity}, for {wait}]")
                print(f"    expr: {' '.join(str(rule['expr']).split())}")
                print(f"    runbook: {notes.get('runbook_url', '-')}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=180)
    args = parser.parse_args(argv)
    info = ensure_cluster()
    kube = Kube(info.kubectl, info.kubeconfig)
    install_crds(kube)
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(lws_controller(info.kubectl, info.kubeconfig))
        except LwsUnavailableError as exc:
            print(
                f"LeaderWorkerSet controller unavailable ({exc}); multi-node DSDs stay Progressing"
            )
        return run_demo(kube, info.kubeconfig, args.timeout)


def run_demo(kube: Kube, kubeconfig: Path, timeout: float) -> int:
    """Run the operator, apply the samples, wait and print (the cluster is ready)."""
    log = Path(tempfile.mkdtemp(prefix="deepseek-operator-")) / "operator.log"
    operator = OperatorProcess(kubeconfig, log, resync_seconds=5, namespaces=(NAMESPACE,)).start()
    try:
        operator.wait_started()
        ensure_namespace(kube)
        docs = load_samples(sample_files())
        names = [d["metadata"]["name"] for d in docs]
        print(f"applying {len(docs)} DeepSeekDeployments: {', '.join(names)}")
        create_referenced_config(kube, docs)
        kube.apply(docs, NAMESPACE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            bind_pending_claims(kube)
            objs = [kube.json("get", "dsd", n, "-n", NAMESPACE) for n in names]
            if all(settled(o) for o in objs):
                break
            time.sleep(2)
        print()
        print(kube("get", "dsd", "-n", NAMESPACE).stdout)
        print_plans(kube, names)
        print_placement(kube)
        describe_one(kube, names)
        writes = operator.writes()
        print(f"\noperator API writes so far: {len(writes)} (log: {log})")
    finally:
        operator.stop()
    print(f"operator stopped; cluster left up (namespace {NAMESPACE}).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
