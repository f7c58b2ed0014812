"""SIGKILL the operator during create, update, scale and a canary; it converges each time.

The CI-sized run: one kill per step (seeded random delays). ``bench/reliability.py``
runs 20 (five per step). See ``operator_crashes`` for the checks.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from e2e.devcluster import ClusterInfo
from e2e.operator_harness import Kube, Scope
from e2e.reliability.operator_crashes import CrashRunner, plan_of
from e2e.reliability.operator_env import install_operator_crds
from e2e.reliability.prometheus import constant_prometheus

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(900)]


def test_operator_killed_at_random_points_converges(
    cluster: ClusterInfo, prometheus_bin: Path, tmp_path: Path
) -> None:
    kube = Kube(cluster.kubectl, cluster.kubeconfig)
    install_operator_crds(kube)
    scope = Scope(kube)
    namespace = scope.new_namespace()
    with constant_prometheus(prometheus_bin, tmp_path / "prometheus") as prometheus:
        runner = CrashRunner(
            kube,
            cluster.kubeconfig,
            scope.pattern,
            namespace,
            log_dir=tmp_path,
            prometheus=prometheus,
            seed=13,
        )
        try:
            runner.prepare()
            report = runner.run(plan_of(4))
            print(json.dumps(report.to_json(), indent=1))
            assert report.converged == report.kills == 4, report.to_json()["problems"]
            assert runner.tracebacks() == []
        finally:
            runner.stop()
            scope.delete_namespace(namespace)
