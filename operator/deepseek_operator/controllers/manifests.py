"""Writes the operator's generated install files; a unit test checks they do not drift.

``python -m deepseek_operator.controllers.manifests [REPO_ROOT]`` regenerates:

- ``manifests/base/rbac.yaml`` and ``charts/deepseek-operator/files/rbac-rules.yaml``
  from :mod:`.rbac`;
- ``manifests/base/kopf-peering-crds.yaml`` and
  ``charts/deepseek-operator/crds/kopf-peering.yaml`` from :mod:`.peering`;
- ``charts/deepseek-operator/crds/<crd>.yaml``: copies of the generated CRDs in ``crds/``
  (Helm only installs CRDs from inside the chart).
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from . import peering, rbac

CHART = Path("charts/deepseek-operator")


def expected_files(root: Path) -> dict[Path, str]:
    """Relative path → content of every generated file."""
    files = {
        Path("manifests/base/rbac.yaml"): rbac.render_yaml(),
        CHART / "files/rbac-rules.yaml": yaml.safe_dump(rbac.cluster_rules(), sort_keys=False),
        Path("manifests/base/kopf-peering-crds.yaml"): peering.render_yaml(),
        CHART / "crds/kopf-peering.yaml": peering.render_yaml(),
    }
    for crd in sorted((root / "crds").glob("*.yaml")):
        if crd.name != "kustomization.yaml":
            files[CHART / "crds" / crd.name] = crd.read_text()
    return files


def write_all(root: Path) -> list[Path]:
    """Write every generated file under ``root``; return the paths written."""
    written = []
    for rel, text in expected_files(root).items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            written.append(rel)
    return written


if __name__ == "__main__":
    repo = Path(sys.argv[1]) if len(sys.argv) > 1 else Path.cwd()
    for p in write_all(repo):
        print(f"wrote {p}")
