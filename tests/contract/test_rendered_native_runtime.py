"""The runtime the operator renders can load the model it is rendered for.

Contract between ``deepseek_operator`` and ``deepseek_runtime``: render a sample with the
real CLI, take the engine container's command, arguments and environment exactly as
rendered, and run them as a real process against a tiny checkpoint of the same
architecture (mount paths are re-rooted under a temporary directory, and the listen
address is moved to loopback). The canary sample serves R1-Distill-Qwen-14B
(``Qwen2ForCausalLM``) on the default engine, so this is what a pod of it would run.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml

from deepseek_runtime.checkpoint.make_tiny import make_tiny_checkpoint

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rendered_engine_container(sample: str) -> tuple[dict[str, Any], dict[str, Any]]:
    out = subprocess.run(
        [str(BIN / "deepseek-operator"), "render", "-f", str(REPO / sample)],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    for doc in yaml.safe_load_all(out):
        if doc and doc.get("kind") == "Deployment":
            spec = doc["spec"]["template"]["spec"]
            return doc, spec["containers"][0]
    raise AssertionError(f"no Deployment rendered for {sample}")


def _localise(container: dict[str, Any], root: Path, model: Path, port: int) -> list[str]:
    """The rendered argv, with the model path, host and port made local."""
    argv = [*container["command"], *container.get("args", [])]
    if argv[0] == "deepseek-runtime":
        argv[0] = str(BIN / "deepseek-runtime")
    replace = {"--model": str(model), "--host": "127.0.0.1", "--port": str(port)}
    for i, arg in enumerate(argv[:-1]):
        if arg in replace:
            argv[i + 1] = replace[arg]
    return argv


def test_canary_sample_renders_a_native_runtime_that_loads_its_distill(tmp_path: Path) -> None:
    deployment, container = _rendered_engine_container("manifests/samples/canary-istio-keda.yaml")
    argv = [*container["command"], *container.get("args", [])]
    assert "--engine" in argv and argv[argv.index("--engine") + 1] == "native"
    env = {e["name"]: e.get("value", "") for e in container.get("env", []) if "value" in e}
    assert env["DSR_TENSOR_PARALLEL_SIZE"] == "1" and env["DSR_PIPELINE_PARALLEL_SIZE"] == "1"
    max_len = int(env["DSR_MAX_MODEL_LEN"])
    # a tiny Qwen2 (the 14B distill's architecture) whose context holds maxModelLen
    model = make_tiny_checkpoint(
        tmp_path / "DeepSeek-R1-Distill-Qwen-14B",
        "qwen2",
        seed=6,
        overrides={"max_position_embeddings": 2 * max_len},
    )
    root = tmp_path / "root"
    for name, value in list(env.items()):
        if value.startswith("/"):  # a mounted file or directory: re-root it
            env[name] = str(root / value.lstrip("/"))
    key = "sk-contract-test"
    Path(env["DSR_API_KEYS_FILE"]).parent.mkdir(parents=True)
    Path(env["DSR_API_KEYS_FILE"]).write_text(key + "\n")
    Path(env["DSR_CONTENT_FILTER"]).parent.mkdir(parents=True)
    Path(env["DSR_CONTENT_FILTER"]).write_text("blocklist: [forbidden phrase]\n")
    env["DSR_KV_CACHE_MEMORY_BYTES"] = str(64 << 20)  # CPU here; the pod sizes from its GPU
    port = _free_port()
    log = tmp_path / "server.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            _localise(container, root, model, port),
            env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, log.read_text(errors="replace")
            try:
                if httpx.get(url + "/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, log.read_text(errors="replace")
            time.sleep(0.3)
        client = openai.OpenAI(base_url=url + "/v1", api_key=key)
        served = client.models.list().data[0].id
        assert (
            served
            == env["DSR_SERVED_MODEL_NAME"]
            == deployment["metadata"]["labels"].get("deepseek.ai/model", served)
        )
        chat = client.chat.completions.create(
            model=served,
            messages=[{"role": "user", "content": "hello"}],
            max_tokens=4,
            temperature=0,
        )
        assert chat.usage is not None and chat.usage.completion_tokens >= 1
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=url + "/v1", api_key="wrong").models.list()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
