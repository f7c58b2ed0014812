"""``tritonclient`` against the server's KServe v2 faces, and the ``triton`` backend through them.

A real Triton server cannot run here, so the triton backend is tested against this
project's own gRPC v2 face (same protocol, same tensor names as Triton's vLLM backend).
"""

from __future__ import annotations

import json
import queue
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest
import tritonclient.grpc as grpcclient
from server_harness import REPO, ServerProcess, free_port
from tritonclient.utils import InferenceServerException

pytestmark = [pytest.mark.slow]


def _inputs(text: str, params: dict[str, object], stream: bool) -> list[grpcclient.InferInput]:
    t = grpcclient.InferInput("text_input", [1], "BYTES")
    t.set_data_from_numpy(np.array([text.encode()], dtype=object))
    s = grpcclient.InferInput("stream", [1], "BOOL")
    s.set_data_from_numpy(np.array([stream]))
    p = grpcclient.InferInput("sampling_parameters", [1], "BYTES")
    p.set_data_from_numpy(np.array([json.dumps(params).encode()], dtype=object))
    return [t, s, p]


def test_grpc_health_metadata_and_errors(server: ServerProcess) -> None:
    c = grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
    assert c.is_server_live() and c.is_server_ready()
    assert c.is_model_ready("tiny-v3")
    assert not c.is_model_ready("missing")
    meta = c.get_model_metadata("tiny-v3", as_json=True)
    assert {i["name"] for i in meta["inputs"]} >= {"text_input", "sampling_parameters"}
    assert meta["outputs"][0]["name"] == "text_output"
    with pytest.raises(InferenceServerException, match="unknown model"):
        c.get_model_metadata("missing")
    with pytest.raises(InferenceServerException, match="max_tokens"):
        c.infer("tiny-v3", _inputs("hi", {"max_tokens": 0}, False))


def test_grpc_unary_and_decoupled_stream(server: ServerProcess) -> None:
    c = grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
    params = {"max_tokens": 6, "temperature": 0, "ignore_eos": True}
    whole = c.infer("tiny-v3", _inputs("hello", params, False)).as_numpy("text_output")
    assert whole is not None
    results: queue.Queue[tuple[object, object]] = queue.Queue()
    c.start_stream(callback=lambda result, error: results.put((result, error)))
    c.async_stream_infer(
        "tiny-v3", _inputs("hello", params, True), request_id="r1", enable_empty_final_response=True
    )
    pieces = []
    while True:
        result, error = results.get(timeout=30)
        assert error is None
        resp = result.get_response()  # type: ignore[attr-defined]
        out = result.as_numpy("text_output")  # type: ignore[attr-defined]
        if out is not None:
            pieces.append(out[0].decode())
        if resp.parameters["triton_final_response"].bool_param:
            break
    c.stop_stream()
    assert len(pieces) >= 2
    assert "".join(pieces) == whole[0].decode()


def test_http_v2_face(server: ServerProcess) -> None:
    u = server.url
    assert httpx.get(u + "/v2/health/live").status_code == 200
    assert httpx.get(u + "/v2/health/ready").status_code == 200
    assert httpx.get(u + "/v2/models/tiny-v3/ready").status_code == 200
    assert httpx.get(u + "/v2/models/other/ready").status_code == 404
    body = {"text_input": "hello", "max_tokens": 5, "temperature": 0, "ignore_eos": True}
    r = httpx.post(u + "/v2/models/tiny-v3/generate", content=json.dumps(body))
    assert r.status_code == 200
    text = r.json()["text_output"]
    with httpx.stream("POST", u + "/v2/models/tiny-v3/generate_stream", json=body) as s:
        events = [json.loads(x[6:]) for x in s.iter_lines() if x.startswith("data: ")]
    assert "".join(e["text_output"] for e in events) == text
    r = httpx.post(
        u + "/v2/models/tiny-v3/infer",
        json={
            "inputs": [
                {"name": "text_input", "datatype": "BYTES", "shape": [1], "data": ["hello"]}
            ],
            "parameters": {"max_tokens": 5, "temperature": 0, "ignore_eos": True},
        },
    )
    assert r.json()["outputs"][0]["data"] == [text]
    r = httpx.post(u + "/v2/models/tiny-v3/generate", json={"text_input": "x", "top_p": 7})
    assert r.status_code == 400


def test_triton_backend_proxies_to_v2_grpc(
    server: ServerProcess, tiny_model: Path, tmp_path: Path
) -> None:
    front = ServerProcess(
        tiny_model,
        args=[
            "--engine",
            "triton",
            "--triton-url",
            f"127.0.0.1:{server.grpc_port}",
            "--triton-model",
            "tiny-v3",
            "--served-model-name",
            "proxied",
        ],
    )
    front.start(tmp_path)
    try:
        client = openai.OpenAI(base_url=front.url + "/v1", api_key="x", max_retries=0)
        direct = openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)
        msgs = [{"role": "user", "content": "hi"}]
        kw = {"max_tokens": 5, "temperature": 0, "extra_body": {"ignore_eos": True}}
        a = client.chat.completions.create(model="proxied", messages=msgs, **kw)  # type: ignore[arg-type]
        b = direct.chat.completions.create(model="tiny-v3", messages=msgs, **kw)  # type: ignore[arg-type]
        assert a.choices[0].message.content == b.choices[0].message.content
        streamed = "".join(
            c.choices[0].delta.content or ""
            for c in client.chat.completions.create(
                model="proxied", messages=msgs, stream=True, **kw
            )  # type: ignore[arg-type]
            if c.choices
        )
        assert streamed == b.choices[0].message.content
    finally:
        front.stop()


def test_triton_backend_clear_errors(
    tiny_model: Path, tmp_path: Path, server: ServerProcess
) -> None:
    def run(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "deepseek_runtime.cli",
                "serve",
                "--model",
                str(tiny_model),
                "--port",
                str(free_port()),
                "--engine",
                "triton",
                *extra,
            ],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=REPO,
            check=False,
        )

    down = run("--triton-url", f"127.0.0.1:{free_port()}")
    assert down.returncode == 1 and "cannot reach the Triton server" in down.stderr
    missing = run("--triton-url", f"127.0.0.1:{server.grpc_port}", "--triton-model", "nope")
    assert missing.returncode == 1 and "'nope' is missing or not ready" in missing.stderr
