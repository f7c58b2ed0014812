"""``deepseek-runtime serve --quantization int8|int4`` serves a tiny V3 checkpoint.

A real server process per format and the official ``openai`` client: greedy completions
equal what the same quantized engine gives in process (so the server really runs the
quantized weights), and a value the engine cannot honour stops the server with a message
naming the option.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import openai
import pytest
import torch
from server_harness import ServerProcess

from deepseek_runtime.backends.native import build_engine
from deepseek_runtime.backends.options import NativeEngineOptions
from deepseek_runtime.checkpoint.make_tiny import make_tiny_checkpoint
from deepseek_runtime.engine import SamplingParams

pytestmark = pytest.mark.slow

# int4 groups of 32 must divide every quantized input width, CPU int4 tiles 16 output rows
OVERRIDES = {"q_lora_rank": 64, "kv_lora_rank": 56}
PROMPT = [7, 8, 9, 10, 11, 12]


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_checkpoint(tmp_path_factory.mktemp("quant-v3"), "v3", 0, OVERRIDES)


@pytest.mark.parametrize("method", ["int8", "int4"])
def test_serves_quantized_weights(
    model: Path, method: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    args = ["--quantization", method, "--quantization-group-size", "32", "--dtype", "float32"]
    proc = ServerProcess(model, args=args).start(tmp_path_factory.mktemp("logs"))
    try:
        client = openai.OpenAI(base_url=proc.url + "/v1", api_key="unused")
        name = client.models.list().data[0].id
        out = client.completions.create(
            model=name,
            prompt=PROMPT,
            max_tokens=10,
            temperature=0,
            extra_body={"ignore_eos": True},
        )
        text = out.choices[0].text
    finally:
        proc.stop()
    torch.set_num_threads(1)
    engine, tokenizer = build_engine(
        NativeEngineOptions(
            model_dir=model,
            dtype="float32",
            device="cpu",
            quantization=method,
            quantization_group_size=32,
        )
    )
    ids = engine.generate([PROMPT], SamplingParams(max_tokens=10, temperature=0, ignore_eos=True))[
        0
    ]
    expected = tokenizer.decode(ids)  # type: ignore[union-attr]
    assert text in (expected, expected.rstrip("\ufffd"))
    dense, _ = build_engine(NativeEngineOptions(model_dir=model, dtype="float32", device="cpu"))
    assert engine.runner.weight_bytes.linear < dense.runner.weight_bytes.linear / 3  # type: ignore[attr-defined]


def test_an_unservable_quantization_stops_the_server(model: Path) -> None:
    cmd = [sys.executable, "-m", "deepseek_runtime.cli", "serve", "--model", str(model)]
    cmd += ["--port", "0", "--quantization", "int4", "--quantization-group-size", "48"]
    result = subprocess.run(
        cmd,
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "--quantization-group-size 48" in result.stdout + result.stderr
