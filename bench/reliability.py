"""Benchmark: the issue-13 fault, overload, slow-client and fuzz suites, longer; prints JSON.

``python bench/reliability.py [--suites all] [--overload-seconds 60] [--kills 20]
[--spec-examples 100] [--http-examples 30]``

Runs the suites of ``e2e/reliability`` (the pytest tests there run the same functions
with CI-sized settings) and prints one JSON object, one key per suite:

- ``slow_clients``: 3 attackers of each kind (slowloris, idle, huge headers, oversized
  and chunked bodies, trickled body, unread stream) against 5/10/10 s header/body/send
  limits, with
  victims' latency quiet vs. under attack;
- ``overload``: 10x capacity (engine 4 running + 4 waiting) for ``--overload-seconds``;
- ``sigterm``: SIGTERM under load, admitted requests lost;
- ``worker_death``: kill -9 of a ``--tensor-parallel-size 2`` CPU worker under load;
- ``operator_crashes``: ``--kills`` SIGKILLs of the operator (create/update/scale/canary);
- ``spec_fuzz``: ``--spec-examples`` hypothesis DSD specs against apiserver + operator;
- ``http_fuzz``: schemathesis with API keys, ``--http-examples`` per operation.

The operator suites use the local kwok cluster (``e2e.devcluster``; started if needed,
left up) and ``/usr/bin/prometheus``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from e2e.reliability.overload import run_overload  # noqa: E402
from e2e.reliability.process_faults import run_sigterm_under_load, run_worker_death  # noqa: E402
from e2e.reliability.server import RuntimeServer  # noqa: E402
from e2e.reliability.slow_clients import run_slow_clients  # noqa: E402

from deepseek_runtime.checkpoint.make_tiny import make_tiny_checkpoint  # noqa: E402

SUITES = (
    "slow_clients",
    "overload",
    "sigterm",
    "worker_death",
    "operator_crashes",
    "spec_fuzz",
    "http_fuzz",
)
PROMETHEUS = Path("/usr/bin/prometheus")
FUZZ_KEY = "sk-bench-0123456789"


def _served(model: Path, work: Path, args: list[str], **kw: Any) -> RuntimeServer:
    return RuntimeServer(model, args=args, **kw).start(work / "logs")


def slow_clients(model: Path, work: Path, _: argparse.Namespace) -> dict[str, Any]:
    # limits shorter than the defaults so that every cut lands inside the attack window
    limits = ["--header-timeout", "5", "--body-timeout", "10", "--send-timeout", "10"]
    server = _served(model, work, limits)
    try:
        report = asyncio.run(run_slow_clients(server, per_kind=3, deadline_s=30, drip=1.0))
        return report.to_json()
    finally:
        server.stop()


def overload(model: Path, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    server = _served(model, work, ["--max-num-seqs", "4", "--max-waiting", "4"])
    try:
        report = asyncio.run(
            run_overload(server, capacity=8, factor=10, seconds=args.overload_seconds)
        )
        return {"capacity": 8, "factor": 10, **report.to_json()}
    finally:
        server.stop()


def sigterm(model: Path, work: Path, _: argparse.Namespace) -> dict[str, Any]:
    server = _served(model, work, ["--drain-timeout", "60"])
    try:
        return asyncio.run(run_sigterm_under_load(server, clients=16, warm_seconds=5)).to_json()
    finally:
        server.stop()


def worker_death(model: Path, work: Path, _: argparse.Namespace) -> dict[str, Any]:
    tp = ["--tensor-parallel-size", "2", "--device", "cpu", "--dtype", "float32"]
    server = _served(model, work, [*tp, "--num-blocks", "256"])
    try:
        return asyncio.run(run_worker_death(server, clients=8, warm_seconds=5)).to_json()
    finally:
        server.stop()


def _cluster() -> Any:
    from e2e.devcluster import ensure_cluster  # noqa: PLC0415
    from e2e.operator_harness import Kube  # noqa: PLC0415
    from e2e.reliability.operator_env import install_operator_crds  # noqa: PLC0415

    info = ensure_cluster()
    kube = Kube(info.kubectl, info.kubeconfig)
    install_operator_crds(kube)
    return info, kube


def operator_crashes(_: Path, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    from e2e.operator_harness import Scope  # noqa: PLC0415
    from e2e.reliability.operator_crashes import CrashRunner, plan_of  # noqa: PLC0415
    from e2e.reliability.prometheus import constant_prometheus  # noqa: PLC0415

    info, kube = _cluster()
    scope = Scope(kube)
    namespace = scope.new_namespace()
    try:
        with constant_prometheus(PROMETHEUS, work / "prometheus") as prometheus:
            runner = CrashRunner(
                kube,
                info.kubeconfig,
                scope.pattern,
                namespace,
                log_dir=work / "operator",
                prometheus=prometheus,
                seed=args.seed,
            )
            try:
                runner.prepare()
                report = runner.run(plan_of(args.kills)).to_json()
                report["operator_tracebacks"] = len(runner.tracebacks())
                return report
            finally:
                runner.stop()
    finally:
        scope.delete_namespace(namespace)


def spec_fuzz(_: Path, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    from e2e.operator_harness import OperatorProcess, Scope  # noqa: PLC0415
    from e2e.reliability.spec_fuzz import SpecFuzzer  # noqa: PLC0415

    info, kube = _cluster()
    scope = Scope(kube)
    namespace = scope.new_namespace()
    operator = OperatorProcess(
        info.kubeconfig, work / "fuzz-operator.log", resync_seconds=2, namespaces=(scope.pattern,)
    ).start()
    try:
        operator.wait_started()
        fuzzer = SpecFuzzer(kube, operator, namespace)
        return fuzzer.run(examples=args.spec_examples, rng_seed=args.seed).to_json()
    finally:
        operator.stop()
        scope.delete_namespace(namespace)


def http_fuzz(model: Path, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    from e2e.reliability.http_fuzz import run_http_fuzz  # noqa: PLC0415

    server_args = ["--api-keys", FUZZ_KEY, "--max-model-len", "64", "--max-n", "4"]
    headers = {"Authorization": f"Bearer {FUZZ_KEY}"}
    server = _served(model, work, server_args, headers=headers)
    try:
        return run_http_fuzz(server, FUZZ_KEY, work, examples=args.http_examples).to_json()
    finally:
        server.stop()


RUNNERS: dict[str, Callable[[Path, Path, argparse.Namespace], dict[str, Any]]] = {
    "slow_clients": slow_clients,
    "overload": overload,
    "sigterm": sigterm,
    "worker_death": worker_death,
    "operator_crashes": operator_crashes,
    "spec_fuzz": spec_fuzz,
    "http_fuzz": http_fuzz,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--suites", default="all", help=f"comma list of {', '.join(SUITES)}")
    parser.add_argument("--overload-seconds", type=float, default=60.0)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--spec-examples", type=int, default=100)
    parser.add_argument("--http-examples", type=int, default=30)
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args()
    chosen = SUITES if args.suites == "all" else tuple(args.suites.split(","))
    unknown = set(chosen) - set(SUITES)
    if unknown:
        parser.error(f"unknown suites: {sorted(unknown)}")
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="reliability-") as tmp:
        work = Path(tmp)
        model = Path(make_tiny_checkpoint(work / "tiny-v3", arch="v3", seed=0))
        for name in chosen:
            started = time.monotonic()
            suite_dir = work / name
            suite_dir.mkdir()
            try:
                out[name] = RUNNERS[name](model, suite_dir, args)
            except Exception as exc:  # report and go on with the other suites
                out[name] = {"error": f"{type(exc).__name__}: {exc}"[:2000]}
            out[name]["suite_seconds"] = round(time.monotonic() - started, 1)
            print(f"[reliability] {name} done", file=sys.stderr, flush=True)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
