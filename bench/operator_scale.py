"""Benchmark: the operator at scale on the local control plane; prints JSON.

``python bench/operator_scale.py [--scale 32] [--dsds 200]`` brings up its own kwok
cluster (``deepseek-bench``; every pool of ``e2e/pools.yaml`` × ``--scale``, so 32 gives
512 simulated GPU nodes), runs the operator as a subprocess, creates ``--dsds``
DeepSeekDeployments at once (distill models spread over the four GPU products), and
reports:

- time from creation to kstatus-Current (Ready for the latest generation) per DSD:
  p50 / p99 / max, and the time until all are Ready;
- API writes per DSD during creation (from the operator's ``api_write`` log records,
  by verb, plus the Events it posted);
- API writes per resync at steady state (timer resyncs; target 0) and during a restart
  of the operator (resume of every DSD; target 0), cross-checked by comparing every
  object's resourceVersion before and after;
- the operator's peak RSS.

The cluster is left up for inspection (``DSK_CLUSTER_NAME=deepseek-bench python -m
e2e.devcluster down`` removes it) unless ``--down``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from e2e.devcluster import down, ensure_cluster  # noqa: E402
from e2e.operator_harness import (  # noqa: E402
    CHILD_KINDS,
    Kube,
    OperatorProcess,
    children,
    current,
    dsd,
    install_crds,
)

NAMESPACE = "bench"
MODELS = [
    ("deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B", "H100"),
    ("deepseek-ai/DeepSeek-R1-Distill-Qwen-7B", "L40S"),
    ("deepseek-ai/DeepSeek-V2-Lite", "A100"),
    ("deepseek-ai/DeepSeek-R1-Distill-Llama-8B", "H200"),
]


class RssSampler(threading.Thread):
    """Samples a process's RSS until stopped; keeps the peak."""

    def __init__(self, pid: int, period: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.proc = psutil.Process(pid)
        self.period = period
        self.peak = 0
        self.stop_flag = threading.Event()

    def run(self) -> None:
        while not self.stop_flag.is_set():
            try:
                self.peak = max(self.peak, self.proc.memory_info().rss)
            except psutil.Error:
                return
            time.sleep(self.period)


def reset_namespace(kube: Kube) -> None:
    """Delete what an earlier run left (the running operator finalizes it), then recreate."""
    if kube("get", "namespace", NAMESPACE, check=False).returncode == 0:
        kube(
            "delete",
            "dsd",
            "--all",
            "-n",
            NAMESPACE,
            "--wait=true",
            "--timeout=600s",
            check=False,
            timeout=620,
        )
        kube(
            "delete",
            "namespace",
            NAMESPACE,
            "--wait=true",
            "--timeout=300s",
            check=False,
            timeout=320,
        )
    kube("create", "namespace", NAMESPACE)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return round(ordered[k], 2)


def versions(kube: Kube) -> dict[str, str]:
    kinds = ",".join(("deepseekdeployments.deepseek.ai", *CHILD_KINDS))
    items = kube.json("get", kinds, "-n", NAMESPACE)["items"]
    return {f"{i['kind']}/{i['metadata']['name']}": i["metadata"]["resourceVersion"] for i in items}


def by_verb(writes: list[dict[str, Any]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for w in writes:
        out[w.get("verb", "?")] = out.get(w.get("verb", "?"), 0) + 1
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    t_cluster = time.monotonic()
    info = ensure_cluster(scale=args.scale, name=args.cluster)
    cluster_s = time.monotonic() - t_cluster
    kube = Kube(info.kubectl, info.kubeconfig)
    install_crds(kube)
    gpu_nodes = len(kube.json("get", "nodes", "-l", "nvidia.com/gpu.present=true")["items"])
    workdir = Path(tempfile.mkdtemp(prefix="operator-bench-"))
    op = OperatorProcess(
        info.kubeconfig,
        workdir / "operator.log",
        f"--workers={args.workers}",
        resync_seconds=args.resync,
    ).start()
    op.wait_started(120)
    reset_namespace(kube)  # the operator finalizes DSDs left by an earlier run
    rss = RssSampler(op.pid)
    rss.start()
    try:
        names = [f"dsd-{i:03d}" for i in range(args.dsds)]
        docs = []
        for i, name in enumerate(names):
            model, product = MODELS[i % len(MODELS)]
            doc = dsd(name, model, products=[product])
            doc["metadata"]["namespace"] = NAMESPACE
            docs.append(doc)
        mark = op.mark()
        t0 = time.monotonic()
        for start in range(0, len(docs), 50):
            kube.apply(docs[start : start + 50], NAMESPACE)
        applied_s = time.monotonic() - t0
        ready_at: dict[str, float] = {}
        deadline = t0 + args.timeout
        while len(ready_at) < len(names) and time.monotonic() < deadline:
            items = kube.json("get", "dsd", "-n", NAMESPACE)["items"]
            now = time.monotonic() - t0
            for item in items:
                if item["metadata"]["name"] not in ready_at and current(item):
                    ready_at[item["metadata"]["name"]] = now
            time.sleep(1)
        all_ready_s = max(ready_at.values()) if len(ready_at) == len(names) else None
        time.sleep(3)  # let the last workload events land
        creation = [w for w in op.writes_since(mark) if w.get("namespace") == NAMESPACE]
        events = kube.json(
            "get",
            "events",
            "-n",
            NAMESPACE,
            "--field-selector",
            "involvedObject.kind=DeepSeekDeployment",
        )["items"]
        # steady state: timer resyncs
        before = versions(kube)
        mark = op.mark()
        time.sleep(args.resync * args.resyncs + 1)
        steady = op.writes_since(mark)
        steady_changed = sum(1 for k, v in versions(kube).items() if before.get(k) != v)
        # restart: every DSD resumed by a fresh process
        op.stop()
        rss.stop_flag.set()
        second = OperatorProcess(
            info.kubeconfig,
            workdir / "restart.log",
            f"--workers={args.workers}",
            resync_seconds=args.resync,
        )
        second.start()
        t_restart = time.monotonic()
        second.wait_started(120)
        resumed: set[str] = set()
        while len(resumed) < len(names) and time.monotonic() - t_restart < args.timeout:
            resumed = {
                r.get("name", "") for r in second.log_lines() if r.get("event") == "reconciled"
            }
            time.sleep(1)
        resume_s = time.monotonic() - t_restart
        time.sleep(args.resync + 1)  # one resync period on the new process too
        restart_writes = second.writes()
        restart_changed = sum(1 for k, v in versions(kube).items() if before.get(k) != v)
        # delete: every DSD and every child gone (finalizer + owner references)
        t_delete = time.monotonic()
        kube(
            "delete", "dsd", "--all", "-n", NAMESPACE, "--wait=true", "--timeout=600s", timeout=620
        )
        while children(kube, NAMESPACE) and time.monotonic() - t_delete < args.timeout:
            time.sleep(1)
        delete_s = time.monotonic() - t_delete
        children_left = len(children(kube, NAMESPACE))
        second.stop()
    finally:
        op.stop()
        rss.stop_flag.set()
    ttr = list(ready_at.values())
    result = {
        "benchmark": "operator_scale",
        "cluster": {
            "name": info.name,
            "scale": args.scale,
            "gpu_nodes": gpu_nodes,
            "setup_s": round(cluster_s, 1),
        },
        "dsds": args.dsds,
        "ready": len(ready_at),
        "apply_s": round(applied_s, 2),
        "time_to_ready_s": {
            "p50": pct(ttr, 0.5),
            "p99": pct(ttr, 0.99),
            "max": pct(ttr, 1.0),
            "mean": round(statistics.fmean(ttr), 2) if ttr else None,
        },
        "time_to_all_ready_s": round(all_ready_s, 2) if all_ready_s is not None else None,
        "api_writes_per_dsd_at_creation": round(len(creation) / args.dsds, 2),
        "api_writes_at_creation_by_verb": by_verb(creation),
        "events_per_dsd": round(len(events) / args.dsds, 2),
        "steady_state": {
            "resync_period_s": args.resync,
            "resyncs_observed": args.resyncs,
            "api_writes_per_resync": round(len(steady) / args.resyncs, 2),
            "objects_changed": steady_changed,
        },
        "restart": {
            "resume_all_s": round(resume_s, 2),
            "dsds_resumed": len(resumed),
            "api_writes": len(restart_writes),
            "objects_changed": restart_changed,
        },
        "delete_all": {"seconds": round(delete_s, 2), "children_left": children_left},
        "operator_peak_rss_mib": round(rss.peak / 2**20, 1),
        "operator_log": str(workdir),
    }
    if args.down:
        down(info.name)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="DeepSeek operator scale benchmark (JSON)")
    p.add_argument("--scale", type=int, default=32, help="pool multiplier (32: 512 GPU nodes)")
    p.add_argument("--dsds", type=int, default=200)
    p.add_argument("--cluster", default="deepseek-bench")
    p.add_argument("--resync", type=float, default=10.0, help="operator --resync-seconds")
    p.add_argument("--resyncs", type=int, default=3, help="resync periods to observe")
    p.add_argument("--workers", type=int, default=8)
    p.add_argument("--timeout", type=float, default=900)
    p.add_argument("--down", action="store_true", help="delete the cluster at the end")
    p.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = p.parse_args(argv)
    result = run(args)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
