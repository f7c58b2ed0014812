"""Golden tests: every sample under manifests/samples/ renders exactly its golden file.

Regenerate after an intended change with::

    UPDATE_GOLDEN=1 .venv/bin/pytest -q tests/operator/test_render_golden.py

and review the diff of tests/operator/golden/.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from deepseek_operator.cli_inputs import load_deployments
from deepseek_operator.planning import inventory_from_nodes, plan_deployment
from deepseek_operator.planning.examples import example_nodes
from deepseek_operator.render import render_children

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = sorted((ROOT / "manifests" / "samples").glob("*.yaml"))
GOLDEN = Path(__file__).parent / "golden"
UID = "00000000-0000-4000-8000-000000000001"


def _rendered(sample: Path) -> tuple[str, str]:
    (dsd,) = load_deployments(sample)
    dsd.metadata.uid = UID
    dsd.metadata.namespace = "serving"
    plan = plan_deployment(dsd.spec, inventory_from_nodes(example_nodes()))
    children = yaml.safe_dump_all(
        render_children(dsd, plan), sort_keys=False, width=100, allow_unicode=True
    )
    plan_text = yaml.safe_dump(
        plan.model_dump(by_alias=True), sort_keys=False, width=100, allow_unicode=True
    )
    return children, plan_text


def test_there_are_samples_for_each_scenario() -> None:
    names = {s.stem for s in SAMPLES}
    assert {
        "r1-h200",
        "r1-h100-multinode",
        "v2-lite-a100",
        "r1-distill-qwen-7b-l40s",
        "canary-istio-keda",
    } <= names


@pytest.mark.parametrize("sample", SAMPLES, ids=[s.stem for s in SAMPLES])
def test_sample_matches_golden(sample: Path) -> None:
    children, plan = _rendered(sample)
    files = {GOLDEN / f"{sample.stem}.yaml": children, GOLDEN / f"{sample.stem}.plan.yaml": plan}
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.mkdir(exist_ok=True)
        for path, text in files.items():
            path.write_text(text, encoding="utf-8")
    for path, text in files.items():
        assert path.exists(), f"missing {path.name}; run with UPDATE_GOLDEN=1"
        assert path.read_text(encoding="utf-8") == text, (
            f"{path.name} differs from the renderer's output; if intended, regenerate with "
            "UPDATE_GOLDEN=1 and review the diff"
        )
