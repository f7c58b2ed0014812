"""Benchmark: one load step against the KEDA and native autoscalers on live runtimes; JSON.

``python bench/autoscale_e2e.py [--providers keda,native] [--concurrency 6] [--hold 60]``
uses the local cluster (reused when healthy), the operator as a subprocess, the live data
plane of :mod:`e2e.live.harness` (real runtimes for the kwok pods, a real Prometheus) and,
for ``keda``, KEDA's operator and metrics adapter built from the pinned module
(:mod:`e2e.live.keda`; the real kube-controller-manager HPA controller scales). Both
providers get the same DSD shape in one run: ``minReplicas 1``, ``maxReplicas 4``,
``QueueDepth`` target 1, runtimes with ``--max-num-seqs 1``, a 15 s scale-down
stabilization window, and the same step of ``--concurrency`` loopback clients for
``--hold`` seconds. Per provider:

- ``first_scale_up_s``: load start to the first replica count above ``minReplicas``;
- ``first_new_replica_ready_s``: load start to the first new runtime passing readiness;
- ``replicas_at_peak`` against ``replicas_needed`` (``ceil(concurrency / 2)``: each replica
  serves one sequence and the target queues one more) and their ratio (``overshoot``);
- ``scale_down_s``: load stop to replicas back at ``minReplicas``.

The native figures come from :func:`bench.autoscale_native.load_step` (H11-native's
provider); compare ratios within one run, not across machines.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.autoscale_native import load_step as native_load_step  # noqa: E402
from bench.autoscale_native import measure_load_step, replicas  # noqa: E402
from e2e.devcluster import ensure_cluster  # noqa: E402
from e2e.devcluster.toolchain import cache_dir  # noqa: E402
from e2e.live.harness import LiveDataPlane, tiny_checkpoint  # noqa: E402
from e2e.live.keda import Keda  # noqa: E402
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
NAME = "bench-keda"
MIN_REPLICAS = 1


def keda_spec(live: LiveDataPlane, max_replicas: int) -> dict[str, Any]:
    """The DSD of the KEDA load step (same shape as the native one)."""
    return dsd(
        NAME,
        MODEL,
        replicas=None,
        placement=live.placement,
        engine={"kind": "native", "args": ["--max-num-seqs", "1"]},
        monitoring={"prometheusAddress": live.prometheus.address},
        autoscaling={
            "provider": "keda",
            "minReplicas": MIN_REPLICAS,
            "maxReplicas": max_replicas,
            "metrics": [{"type": "QueueDepth", "target": 1}],
            "scaleDownStabilizationSeconds": 15,
        },
    )


def keda_load_step(
    kube: Kube,
    live: LiveDataPlane,
    namespace: str,
    *,
    concurrency: int,
    hold: float,
    max_replicas: int,
) -> dict[str, Any]:
    """The load step on a fresh ``provider: keda`` DSD in ``namespace``."""
    live.watch(namespace)
    kube.apply(keda_spec(live, max_replicas), namespace)
    wait_current(kube, namespace, NAME, timeout=180)
    wait_for("KEDA's HPA", lambda: replicas(kube, namespace, NAME) == MIN_REPLICAS, 120)
    live.wait_runtimes(namespace, MIN_REPLICAS, timeout=180)
    result = measure_load_step(
        kube,
        live,
        namespace,
        name=NAME,
        provider="keda",
        min_replicas=MIN_REPLICAS,
        concurrency=concurrency,
        hold=hold,
        max_replicas=max_replicas,
        scale_down_timeout=300,
    )
    live.unwatch(namespace)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--providers", default="keda,native")
    p.add_argument("--concurrency", type=int, default=6)
    p.add_argument("--hold", type=float, default=60.0)
    p.add_argument("--max-replicas", type=int, default=4)
    args = p.parse_args(argv)
    providers = [x for x in args.providers.split(",") if x]
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
    workdir = Path(tempfile.mkdtemp(prefix="autoscale-e2e-"))
    op = OperatorProcess(
        info.kubeconfig, workdir / "operator.log", resync_seconds=3, namespaces=(scope.pattern,)
    ).start()
    results: list[dict[str, Any]] = []
    namespaces: list[str] = []
    step = {"concurrency": args.concurrency, "hold": args.hold, "max_replicas": args.max_replicas}
    try:
        op.wait_started()
        checkpoint = tiny_checkpoint(cache_dir() / "live")
        with LiveDataPlane(info.kubeconfig, workdir / "live", checkpoint, nodes=2) as live:
            for provider in providers:
                namespaces.append(ns := scope.new_namespace())
                if provider == "keda":
                    with Keda(info.kubeconfig, workdir / "keda", kube):
                        results.append(keda_load_step(kube, live, ns, **step))
                elif provider == "native":
                    results.append(native_load_step(kube, live, ns, **step))
                else:
                    raise SystemExit(f"unknown provider {provider!r} (keda, native)")
                scope.delete_namespace(ns)
    finally:
        for ns in namespaces:
            scope.delete_namespace(ns)
        op.stop()
    print(json.dumps({"bench": "autoscale_e2e", "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
