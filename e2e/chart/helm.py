"""Run the pinned helm against the local cluster (used by ``e2e/chart`` tests)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "deepseek-operator"
NONDEFAULT_VALUES = Path(__file__).resolve().parent / "values-nondefault.yaml"


@dataclass(frozen=True)
class Helm:
    """The helm binary bound to one kubeconfig."""

    binary: Path
    kubeconfig: Path

    def run(
        self, *args: str, check: bool = True, timeout: float = 180
    ) -> subprocess.CompletedProcess[str]:
        """``helm ARGS --kubeconfig ...``; AssertionError with helm's stderr when ``check``."""
        proc = subprocess.run(
            [str(self.binary), *args, "--kubeconfig", str(self.kubeconfig)],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed:\n{proc.stderr}")
        return proc

    def template(self, *args: str, chart: Path = CHART, namespace: str = "default") -> str:
        """Rendered manifests of ``chart`` (no cluster access)."""
        return self.run("template", "probe", str(chart), "--namespace", namespace, *args).stdout
