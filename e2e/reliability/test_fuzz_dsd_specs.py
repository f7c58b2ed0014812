"""Hypothesis-drawn DeepSeekDeployment specs against the real apiserver and operator.

Every spec is rejected by the apiserver, or ends ``Planned=False`` with a message, or
plans; none is stuck or undeletable, and the operator logs no traceback. A bounded,
seeded example count for CI; ``bench/reliability.py`` draws more.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from e2e.devcluster import ClusterInfo
from e2e.operator_harness import Kube, OperatorProcess, Scope
from e2e.reliability.operator_env import install_operator_crds
from e2e.reliability.spec_fuzz import SpecFuzzer

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(900)]


def test_fuzzed_specs_end_cleanly(cluster: ClusterInfo, tmp_path: Path) -> None:
    kube = Kube(cluster.kubectl, cluster.kubeconfig)
    install_operator_crds(kube)
    scope = Scope(kube)
    namespace = scope.new_namespace()
    operator = OperatorProcess(
        cluster.kubeconfig, tmp_path / "operator.log", resync_seconds=2, namespaces=(scope.pattern,)
    ).start()
    try:
        operator.wait_started()
        report = SpecFuzzer(kube, operator, namespace).run(examples=25)
        print(json.dumps(report.to_json(), indent=1))
        assert report.problems == [], report.problems
        assert report.tracebacks == 0, f"see {operator.log_path}"
        assert report.operator_alive
        # the fuzzer reaches all three endings, so it explores more than the schema
        assert {"rejected", "refused", "planned"} <= set(report.endings), report.endings
    finally:
        operator.stop()
        scope.delete_namespace(namespace)
