"""The deepseek-operator CLI: crd, plan, render, api-docs, run; bad files exit 2."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest
import yaml
from dsd_factory import H100, pool

from deepseek_operator.cli import main
from deepseek_operator.crd import build_crd
from deepseek_operator.planning.examples import example_model_config

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "manifests" / "samples"


def _run(argv: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    return main(argv, out=out), out.getvalue()


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_crd_prints_the_generated_crd() -> None:
    code, text = _run(["crd"])
    assert code == 0 and yaml.safe_load(text) == build_crd()
    code, text = _run(["crd", "-o", "json"])
    assert code == 0 and json.loads(text)["spec"]["names"]["shortNames"] == ["dsd"]


def test_plan_text_json_and_yaml() -> None:
    code, text = _run(["plan", "-f", str(SAMPLES / "r1-h200.yaml")])
    assert code == 0
    assert "GPU:      8xH200" in text and "TP8 × PP1 × EP8" in text and "Reasons:" in text
    code, text = _run(["plan", "-f", str(SAMPLES / "r1-h100-multinode.yaml"), "-o", "json"])
    plan = json.loads(text)["plan"]
    assert (plan["tensor"], plan["pipeline"], plan["nodesPerReplica"]) == (8, 2, 2)
    assert plan["engine"] == "vllm"  # engine.kind auto: native serves one GPU per replica
    code, text = _run(["plan", "-f", str(SAMPLES / "v2-lite-a100.yaml"), "-o", "yaml"])
    assert yaml.safe_load(text)["plan"]["gpuProduct"] == "NVIDIA-A100-SXM4-80GB"


def test_plan_with_nodes_from_kubectl(tmp_path: Path) -> None:
    nodes = _write(
        tmp_path,
        "nodes.yaml",
        yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": pool(H100, 2)}),
    )
    code, text = _run(
        ["plan", "-f", str(SAMPLES / "r1-h100-multinode.yaml"), "--nodes", str(nodes), "-o", "json"]
    )
    assert code == 0 and json.loads(text)["plan"]["gpusPerReplica"] == 16


def test_render_prints_every_child(tmp_path: Path) -> None:
    code, text = _run(["render", "-f", str(SAMPLES / "canary-istio-keda.yaml")])
    assert code == 0
    docs = list(yaml.safe_load_all(text))
    kinds = [d["kind"] for d in docs]
    assert kinds == [
        "Service",
        "Service",
        "Deployment",
        "PodDisruptionBudget",
        "ScaledObject",
        "DestinationRule",
        "VirtualService",
        "NetworkPolicy",
        "ServiceMonitor",
        "PrometheusRule",
    ]
    assert all("ownerReferences" not in d["metadata"] for d in docs)  # no uid: a preview
    code, text = _run(["render", "-f", str(SAMPLES / "r1-h200.yaml"), "-n", "serving"])
    assert {d["metadata"]["namespace"] for d in yaml.safe_load_all(text)} == {"serving"}


def test_model_config_for_uncatalogued_models(tmp_path: Path) -> None:
    dsd = _write(
        tmp_path,
        "dsd.yaml",
        yaml.safe_dump(
            {
                "apiVersion": "deepseek.ai/v1alpha1",
                "kind": "DeepSeekDeployment",
                "metadata": {"name": "tiny"},
                "spec": {
                    "model": {
                        "name": "acme/tiny",
                        "source": {"uri": "pvc://w/tiny"},
                        "maxModelLen": 4096,
                    }
                },
            }
        ),
    )
    config = _write(
        tmp_path,
        "config.json",
        json.dumps(example_model_config()),
    )
    code, _ = _run(["plan", "-f", str(dsd)])
    assert code == 1
    code, text = _run(["plan", "-f", str(dsd), "--model-config", str(config), "-o", "json"])
    assert code == 0 and json.loads(text)["plan"]["gpuProduct"] == "NVIDIA-L40S"


HEAD = "apiVersion: deepseek.ai/v1alpha1\nkind: DeepSeekDeployment\nmetadata: {name: x}\n"
BAD = [
    ("missing.yaml", None, r"missing.yaml: no such file"),
    ("syntax.yaml", "spec: [unclosed\n", r"syntax.yaml: line 2, column 1: not valid YAML"),
    ("kind.yaml", "apiVersion: v1\nkind: Pod\n", r"kind.yaml: kind: expected DeepSeekDeployment"),
    (
        "field.yaml",
        HEAD + "spec:\n  model: {name: m, source: {uri: 'hf://a/b'}, maxModelLen: 12}\n",
        r"field.yaml: spec.model.maxModelLen: Input should be greater than or equal to 256",
    ),
    (
        "enum.yaml",
        HEAD + "spec:\n  model: {name: m, source: {uri: 'hf://a/b'}}\n  engine: {kind: tgi}\n",
        r"enum.yaml: spec.engine.kind: Input should be 'auto', 'native', 'vllm' or 'triton'",
    ),
    (
        "list.yaml",
        HEAD + "spec:\n  model: {name: m, source: {uri: 'hf://a/b'}}\n"
        "  rollout: {canary: {steps: [{weight: 10}, {weight: 500}]}}\n",
        r"spec.rollout.canary.steps\[1\].weight: Input should be less than or equal to 100",
    ),
]


@pytest.mark.parametrize(("name", "text", "message"), BAD, ids=[b[0] for b in BAD])
def test_bad_files_name_the_file_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, text: str | None, message: str
) -> None:
    path = tmp_path / name if text is None else _write(tmp_path, name, text)
    code, _ = _run(["plan", "-f", str(path)])
    assert code == 2
    assert re.search(message, capsys.readouterr().err)


def test_bad_nodes_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    nodes = _write(tmp_path, "nodes.yaml", "kind: List\nitems: [{kind: Pod, metadata: {}}]\n")
    code, _ = _run(["plan", "-f", str(SAMPLES / "r1-h200.yaml"), "--nodes", str(nodes)])
    assert code == 2
    assert "nodes.yaml: items[0]: expected a Node object" in capsys.readouterr().err


def test_unplannable_spec_exits_1_with_the_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    nodes = _write(tmp_path, "nodes.yaml", yaml.safe_dump({"kind": "List", "items": pool(H100, 1)}))
    code, _ = _run(["plan", "-f", str(SAMPLES / "r1-h100-multinode.yaml"), "--nodes", str(nodes)])
    assert code == 1
    err = capsys.readouterr().err
    assert "default/r1-h100" in err and "it would fit on 2 such nodes" in err


def test_api_docs_match_the_committed_reference() -> None:
    code, text = _run(["api-docs"])
    assert code == 0
    assert (ROOT / "docs" / "api.md").read_text(encoding="utf-8") == text, (
        "docs/api.md drifted from the models; run: deepseek-operator api-docs > docs/api.md"
    )


def test_console_script_runs_as_a_process() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "deepseek_operator.cli",
            "plan",
            "-f",
            str(SAMPLES / "r1-distill-qwen-7b-l40s.yaml"),
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["plan"]["gpuProduct"] == "NVIDIA-L40S"


def test_run_delegates_to_the_controller(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []
    fake = types.ModuleType("deepseek_operator.controllers")
    fake.run = lambda argv: calls.append(list(argv)) or 0  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "deepseek_operator.controllers", fake)
    assert main(["run", "--standalone", "-n", "x"]) == 0
    assert calls == [["--standalone", "-n", "x"]]


@pytest.mark.parametrize("sample", sorted(SAMPLES.glob("*.yaml")), ids=lambda p: p.stem)
def test_real_kubectl_nodes_plan_like_the_example_inventory(sample: Path) -> None:
    # The fixture is real apiserver output for the local control plane's pools, which the
    # built-in example inventory mirrors: both give the same plan shape.
    nodes = Path(__file__).parent / "fixtures" / "kubectl-get-nodes.yaml"
    _, real = _run(["plan", "-f", str(sample), "--nodes", str(nodes), "-o", "json"])
    _, example = _run(["plan", "-f", str(sample), "-o", "json"])
    keys = ("gpuProduct", "tensor", "pipeline", "expert", "gpusPerReplica", "maxTokensInCache")
    got, want = json.loads(real)["plan"], json.loads(example)["plan"]
    assert {k: got[k] for k in keys} == {k: want[k] for k in keys}


def test_version_is_the_project_version(capsys: pytest.CaptureFixture[str]) -> None:
    import tomllib  # noqa: PLC0415

    from deepseek_operator.cli import main  # noqa: PLC0415

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"deepseek-operator {project}"
