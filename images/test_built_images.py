"""Run the entrypoint of each locally built image (``make images``; not part of ``make test``).

``images/build-local.sh`` builds the operator and CPU runtime images (or finds them cached)
and prints their references; each test then runs the image with podman as its non-root
user: the operator prints its CRD, and the runtime serves a tiny checkpoint written by
``deepseek-runtime make-tiny`` on the host until ``/ready`` answers 200.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml

PROJECT_VERSION = tomllib.loads(
    (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
)["project"]["version"]

ROOT = Path(__file__).resolve().parent.parent
# Podman's default ulimits exceed this sandbox's hard limits, and its crun cannot start
# containers under the host's cgroup v1/v2 hybrid: runc can.
PODMAN_RUN = [
    "podman",
    "run",
    "--rm",
    "--runtime",
    "runc",
    "--ulimit",
    "nofile=1024:1024",
    "--ulimit",
    "nproc=1024:1024",
]


@pytest.fixture(scope="module")
def images() -> dict[str, str]:
    out = subprocess.run(
        ["bash", str(ROOT / "images" / "build-local.sh")],
        capture_output=False,
        stdout=subprocess.PIPE,
        text=True,
        check=True,
        timeout=3600,
    ).stdout
    return dict(line.split(" ", 1) for line in out.splitlines() if line.strip())


def _labels(ref: str) -> dict[str, str]:
    out = subprocess.run(
        ["podman", "image", "inspect", ref], capture_output=True, text=True, check=True
    ).stdout
    return dict(json.loads(out)[0]["Labels"])


def test_operator_entrypoint(images: dict[str, str]) -> None:
    ref = images["operator"]
    proc = subprocess.run(
        [*PODMAN_RUN, "--network", "none", ref, "crd"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    crd = yaml.safe_load(proc.stdout)
    assert crd["spec"]["names"]["kind"] == "DeepSeekDeployment"
    version = subprocess.run(
        [*PODMAN_RUN, "--network", "none", ref, "--version"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"deepseek-operator {PROJECT_VERSION}"
    uid = subprocess.run(
        [*PODMAN_RUN, "--network", "none", "--entrypoint", "id", ref, "-u"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.strip()
    assert uid == "65532"
    labels = _labels(ref)
    assert labels["org.opencontainers.image.title"] == "deepseek-operator"
    assert labels["org.opencontainers.image.version"] == "0.1.0"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_runtime_cpu_serves_a_tiny_checkpoint(images: dict[str, str], tmp_path: Path) -> None:
    ref = images["runtime-cpu"]
    model = tmp_path / "tiny"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "deepseek_runtime.cli",
            "make-tiny",
            "--arch",
            "v3",
            "--out",
            str(model),
        ],
        check=True,
        timeout=300,
    )
    for path in [tmp_path, *model.rglob("*"), model]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    port = _free_port()
    name = f"dsk-runtime-{uuid.uuid4().hex[:6]}"
    subprocess.run(
        [
            *PODMAN_RUN,
            "-d",
            "--name",
            name,
            "--network",
            "host",
            "-v",
            f"{model}:/model:ro",
            ref,
            "serve",
            "--model",
            "/model",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    try:
        deadline = time.monotonic() + 300
        status = None
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=5) as resp:
                    status = resp.status
                    break
            except OSError:
                time.sleep(1)
        logs = subprocess.run(
            ["podman", "logs", name], capture_output=True, text=True, check=False
        ).stderr
        assert status == 200, logs[-3000:]
    finally:
        subprocess.run(["podman", "rm", "-f", name], capture_output=True, check=False)
    assert _labels(ref)["org.opencontainers.image.version"] == "0.1.0-cpu"
