"""Where the locally built control-plane binaries live, and building them when missing.

Reads the pins in ``e2e/toolchain/versions.env`` and maps each tool to the path that
``e2e/toolchain/build.sh`` writes (``$DSK_CACHE/bin/<tool>-<version>/<binary>``).
Used by ``e2e.devcluster.cluster`` and by tests that call kubectl or helm directly.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

TOOLCHAIN_DIR = Path(__file__).resolve().parent.parent / "toolchain"
VERSIONS_FILE = TOOLCHAIN_DIR / "versions.env"
BUILD_SCRIPT = TOOLCHAIN_DIR / "build.sh"

# binary name -> (build.sh tool name, versions.env key)
_BINARIES: dict[str, tuple[str, str]] = {
    "etcd": ("etcd", "ETCD_VERSION"),
    "kube-apiserver": ("kube-apiserver", "K8S_VERSION"),
    "kube-controller-manager": ("kube-controller-manager", "K8S_VERSION"),
    "kube-scheduler": ("kube-scheduler", "K8S_VERSION"),
    "kubectl": ("kubectl", "K8S_VERSION"),
    "kwok": ("kwok", "KWOK_VERSION"),
    "kwokctl": ("kwok", "KWOK_VERSION"),
    "helm": ("helm", "HELM_VERSION"),
}


def cache_dir() -> Path:
    """Root of everything the project caches outside the clone (``$DSK_CACHE``)."""
    default = Path.home() / ".cache" / "deepseek-k8s"
    return Path(os.environ.get("DSK_CACHE", str(default))).expanduser()


def read_versions(path: Path = VERSIONS_FILE) -> dict[str, str]:
    """The ``KEY=value`` pins of ``versions.env`` (comments and blank lines skipped)."""
    versions: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise ValueError(f"{path}: malformed line {raw!r}")
        versions[key.strip()] = value.strip()
    return versions


@dataclass(frozen=True)
class Toolchain:
    """Absolute paths of the pinned binaries (they may not exist yet: see :func:`ensure_built`)."""

    root: Path
    versions: dict[str, str]

    def path(self, binary: str) -> Path:
        """Path of one binary, e.g. ``path("kubectl")``."""
        if binary not in _BINARIES:
            raise ValueError(f"unknown binary {binary!r}; known: {sorted(_BINARIES)}")
        tool, key = _BINARIES[binary]
        return self.root / f"{tool}-{self.versions[key]}" / binary

    def missing(self) -> list[str]:
        """Binaries not built yet."""
        return [b for b in _BINARIES if not self.path(b).is_file()]


def toolchain() -> Toolchain:
    """The toolchain pinned by this checkout."""
    return Toolchain(root=cache_dir() / "bin", versions=read_versions())


def ensure_built() -> Toolchain:
    """Run ``build.sh`` if any binary is missing (progress goes to stdout), then return paths."""
    tc = toolchain()
    if tc.missing():
        subprocess.run(["bash", str(BUILD_SCRIPT)], check=True)
        still = tc.missing()
        if still:
            raise RuntimeError(f"build.sh finished but these binaries are missing: {still}")
    return tc
