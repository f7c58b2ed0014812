"""The controller's decision helpers stay pure: only kube.py, handlers.py, main.py and
reconcile.py may touch kopf or the Kubernetes client."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit
PKG = Path(__file__).resolve().parents[2] / "operator/deepseek_operator/controllers"
PURE = (
    "planning_step",
    "model_config",
    "events",
    "status",
    "semantic",
    "nodes",
    "kinds",
    "peering",
    "rbac",
    "manifests",
    "canary",
)
FORBIDDEN = ("kopf", "kubernetes", ".kube", ".handlers", ".reconcile", ".main")


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            names.add("." * node.level + (node.module or ""))
    return names


@pytest.mark.parametrize("module", PURE)
def test_pure_helpers_do_no_io(module: str) -> None:
    bad = {
        n
        for n in _imports(PKG / f"{module}.py")
        if any(n == f or n.startswith(f + ".") for f in FORBIDDEN)
    }
    assert not bad, f"{module}.py imports {bad}"
