"""Benchmark: a load step against ``autoscaling.provider: native`` on live runtimes; JSON.

``python bench/autoscale_native.py [--concurrency 6] [--hold 60]`` uses the local cluster
(``e2e.devcluster``, reused when healthy), runs the operator as a subprocess and the live
data plane of :mod:`e2e.live.harness` (real ``deepseek-runtime serve`` processes for the
kwok pods, a real Prometheus), creates one DeepSeekDeployment with the native autoscaler
(``minReplicas 1``, ``maxReplicas 4``, ``QueueDepth`` target 1, runtimes with
``--max-num-seqs 1``), then applies a step of ``--concurrency`` loopback clients for
``--hold`` seconds and stops it. It reports:

- ``first_scale_up_s``: load start to the first scale-subresource write (decision latency);
- ``first_new_replica_ready_s``: load start to the first new runtime passing readiness;
- ``replicas_at_peak`` against ``replicas_needed`` (each replica serves one sequence and
  the target queues one more: ``ceil(concurrency / 2)``), and their ratio (overshoot);
- ``scale_down_s``: load stop to replicas back at ``minReplicas``.

:func:`load_step` is the measurement alone, so ``bench/autoscale_e2e.py`` can run it next
to other providers in one run.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from e2e.devcluster import ensure_cluster  # noqa: E402
from e2e.devcluster.toolchain import cache_dir  # noqa: E402
from e2e.live.harness import LiveDataPlane, tiny_checkpoint  # noqa: E402
from e2e.operator_harness import (  # noqa: E402
    Kube,
    OperatorProcess,
    Scope,
    dsd,
    install_crds,
    wait_current,
    wait_for,
)

MODEL = "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B"
NAME = "bench-native"


def native_spec(live: LiveDataPlane, max_replicas: int) -> dict[str, Any]:
    """The DSD of the load step (native engine on the live pool, native autoscaler)."""
    autoscaling = {
        "provider": "native",
        "minReplicas": 1,
        "maxReplicas": max_replicas,
        "metrics": [{"type": "QueueDepth", "target": 1}],
        "scaleDownStabilizationSeconds": 15,
        "native": {"interval": "2s", "stableWindow": "10s", "panicWindow": "4s"},
    }
    return dsd(
        NAME,
        MODEL,
        replicas=None,
        placement=live.placement,
        engine={"kind": "native", "args": ["--max-num-seqs", "1"]},
        monitoring={"prometheusAddress": live.prometheus.address},
        autoscaling=autoscaling,
    )


def replicas(kube: Kube, namespace: str, name: str) -> int:
    """The Deployment ``name``'s desired replicas (what the autoscaler last wrote)."""
    dep = kube.json("get", "deployment", name, "-n", namespace)
    return int(dep["spec"].get("replicas") or 0)


def measure_load_step(
    kube: Kube,
    live: LiveDataPlane,
    namespace: str,
    *,
    name: str,
    provider: str,
    min_replicas: int,
    concurrency: int,
    hold: float,
    max_replicas: int,
    scale_down_timeout: float,
) -> dict[str, Any]:
    """Load step on a DSD already serving ``min_replicas``: the figures as a dict.

    Shared by every provider's bench (``bench/autoscale_e2e.py`` runs KEDA with it), so
    the numbers are measured the same way: time to the first scale-up and to the first
    new runtime ready, peak against needed replicas, and time back to ``min_replicas``.
    """
    before = {r.pod for r in live.runtimes(namespace)}
    peak, first_scale, first_ready = min_replicas, None, None
    t0 = time.monotonic()
    with live.load(namespace, name, MODEL, concurrency=concurrency, max_tokens=64, duration=hold):
        while time.monotonic() - t0 < hold:
            n = replicas(kube, namespace, name)
            if n > min_replicas and first_scale is None:
                first_scale = time.monotonic() - t0
            peak = max(peak, n)
            ready = [
                r.ready_at
                for r in live.runtimes(namespace)
                if r.pod not in before and r.ready_at is not None
            ]
            if ready and first_ready is None:
                first_ready = min(ready) - t0
            time.sleep(0.5)
    t_stop = time.monotonic()
    wait_for(
        "scale-down",
        lambda: replicas(kube, namespace, name) == min_replicas,
        scale_down_timeout,
    )
    scale_down = time.monotonic() - t_stop
    needed = min(max_replicas, math.ceil(concurrency / 2))
    return {
        "provider": provider,
        "concurrency": concurrency,
        "hold_s": hold,
        "first_scale_up_s": None if first_scale is None else round(first_scale, 1),
        "first_new_replica_ready_s": None if first_ready is None else round(first_ready, 1),
        "replicas_at_peak": peak,
        "replicas_needed": needed,
        "overshoot": round(peak / needed, 2),
        "scale_down_s": round(scale_down, 1),
    }


def load_step(
    kube: Kube,
    live: LiveDataPlane,
    namespace: str,
    *,
    concurrency: int = 6,
    hold: float = 60.0,
    max_replicas: int = 4,
) -> dict[str, Any]:
    """Run the load step on a fresh native DSD in ``namespace``; the figures as a dict."""
    live.watch(namespace)
    kube.apply(native_spec(live, max_replicas), namespace)
    wait_current(kube, namespace, NAME, timeout=180)
    live.wait_runtimes(namespace, 1, timeout=180)
    result = measure_load_step(
        kube,
        live,
        namespace,
        name=NAME,
        provider="native",
        min_replicas=1,
        concurrency=concurrency,
        hold=hold,
        max_replicas=max_replicas,
        scale_down_timeout=240,
    )
    live.unwatch(namespace)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--concurrency", type=int, default=6)
    p.add_argument("--hold", type=float, default=60.0)
    p.add_argument("--max-replicas", type=int, default=4)
    args = p.parse_args(argv)
    info = ensure_cluster()
    kube = Kube(info.kubectl, info.kubeconfig)
    install_crds(kube)
    kube(
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager=e2e",
        "-f",
        str(ROOT / "manifests/base/kopf-peering-crds.yaml"),
    )
    scope = Scope(kube)
    workdir = Path(tempfile.mkdtemp(prefix="autoscale-native-"))
    op = OperatorProcess(
        info.kubeconfig, workdir / "operator.log", resync_seconds=3, namespaces=(scope.pattern,)
    ).start()
    namespace = scope.new_namespace()
    try:
        op.wait_started()
        checkpoint = tiny_checkpoint(cache_dir() / "live")
        with LiveDataPlane(info.kubeconfig, workdir / "live", checkpoint, nodes=2) as live:
            result = load_step(
                kube,
                live,
                namespace,
                concurrency=args.concurrency,
                hold=args.hold,
                max_replicas=args.max_replicas,
            )
    finally:
        scope.delete_namespace(namespace)
        op.stop()
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
