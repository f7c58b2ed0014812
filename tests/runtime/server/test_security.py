"""API keys, per-key rate limits, the content filter and the audit log, on a real server."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest
import tritonclient.grpc as grpcclient
from server_harness import ServerProcess
from tritonclient.utils import InferenceServerException

pytestmark = [pytest.mark.slow]

KEY_A = "sk-test-alpha-0123456789"
KEY_B = "sk-test-bravo-9876543210"


@pytest.fixture(scope="module")
def secured(
    tiny_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServerProcess, Path]]:
    d = tmp_path_factory.mktemp("secure")
    (d / "keys").write_text(f"# mounted from a Secret\n{KEY_A}\n")
    (d / "policy.yaml").write_text(
        "blocklist: [forbidden]\nregex:\n  - {name: secret-code, pattern: 'XYZ-\\d{4}'}\n"
    )
    audit = d / "audit.jsonl"
    proc = ServerProcess(
        tiny_model,
        args=[
            "--api-keys-file",
            str(d / "keys"),
            "--rate-limit-rps",
            "2",
            "--content-filter",
            str(d / "policy.yaml"),
            "--audit-log",
            str(audit),
            "--log-prompts",
        ],
        env={"DSR_API_KEYS": KEY_B},
        grpc=True,
    )
    proc.start(d)
    yield proc, audit
    proc.stop()


def _client(proc: ServerProcess, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=proc.url + "/v1", api_key=key, max_retries=0)


def test_keys_from_file_and_env(secured: tuple[ServerProcess, Path]) -> None:
    proc, _ = secured
    with pytest.raises(openai.AuthenticationError):
        _client(proc, "sk-wrong").models.list()
    assert httpx.get(proc.url + "/v1/models").status_code == 401
    assert _client(proc, KEY_A).models.list().data[0].id == "tiny-v3"
    assert _client(proc, KEY_B).models.list().data[0].id == "tiny-v3"
    # probes stay open for the kubelet and Prometheus
    assert httpx.get(proc.url + "/ready").status_code == 200
    assert httpx.get(proc.url + "/metrics").status_code == 200


def test_grpc_face_checks_keys(secured: tuple[ServerProcess, Path]) -> None:
    proc, _ = secured
    time.sleep(1.0)
    c = grpcclient.InferenceServerClient(f"127.0.0.1:{proc.grpc_port}")
    text = grpcclient.InferInput("text_input", [1], "BYTES")
    text.set_data_from_numpy(np.array([b"hi"], dtype=object))
    with pytest.raises(InferenceServerException, match="API key"):
        c.infer("tiny-v3", [text], parameters={"max_tokens": 2})
    time.sleep(0.6)
    ok = c.infer(
        "tiny-v3",
        [text],
        parameters={"max_tokens": 2},
        headers={"authorization": f"Bearer {KEY_B}"},
    )
    assert ok.as_numpy("text_output") is not None


def test_rate_limit_per_key(secured: tuple[ServerProcess, Path]) -> None:
    proc, _ = secured
    time.sleep(1.5)  # let the buckets refill after the test above
    statuses = []
    for _ in range(5):
        r = httpx.post(
            proc.url + "/v1/completions",
            json={"model": "tiny-v3", "prompt": "a", "max_tokens": 1},
            headers={"Authorization": f"Bearer {KEY_A}"},
        )
        statuses.append(r.status_code)
        if r.status_code == 429:
            assert int(r.headers["retry-after"]) >= 1
            assert r.json()["error"]["code"] == "rate_limit_exceeded"
    assert 429 in statuses and statuses[0] == 200
    # the other key has its own bucket
    r = httpx.post(
        proc.url + "/v1/completions",
        json={"model": "tiny-v3", "prompt": "a", "max_tokens": 1},
        headers={"Authorization": f"Bearer {KEY_B}"},
    )
    assert r.status_code == 200


def test_content_filter_on_prompts(secured: tuple[ServerProcess, Path]) -> None:
    proc, _ = secured
    time.sleep(1.0)
    client = _client(proc, KEY_B)
    for text in ("this is Forbidden stuff", "my code is XYZ-1234"):
        with pytest.raises(openai.BadRequestError) as err:
            client.chat.completions.create(
                model="tiny-v3", max_tokens=2, messages=[{"role": "user", "content": text}]
            )
        assert err.value.body["code"] == "content_filter"  # type: ignore[index]
        time.sleep(0.6)


def test_audit_log_has_no_key_and_redacted_prompt(secured: tuple[ServerProcess, Path]) -> None:
    proc, audit = secured
    time.sleep(1.0)
    _client(proc, KEY_A).completions.create(
        model="tiny-v3",
        max_tokens=2,
        prompt="mail bob@example.com or call +1 415-555-0100, card 4111 1111 1111 1111",
    )
    time.sleep(0.2)
    text = audit.read_text()
    assert KEY_A not in text and KEY_B not in text
    entries = [json.loads(line) for line in text.splitlines()]
    last = entries[-1]
    assert {
        "time",
        "key_id",
        "model",
        "prompt_tokens",
        "completion_tokens",
        "status",
        "latency_ms",
    } <= set(last)
    assert last["status"] == 200 and last["completion_tokens"] == 2
    assert last["finish_reason"] in {"length", "stop"}
    assert len(last["key_id"]) == 12
    assert "bob@example.com" not in last["prompt"] and "[EMAIL]" in last["prompt"]
    assert "[CARD]" in last["prompt"] and "[PHONE]" in last["prompt"]
    assert any(e["status"] == 429 for e in entries)
    assert any(e["status"] == 400 for e in entries)


def test_content_filter_on_outputs(tiny_model: Path, tmp_path: Path) -> None:
    (tmp_path / "policy.json").write_text(
        json.dumps({"regex": [{"name": "anything", "pattern": "[a-z]"}], "apply_to_prompts": False})
    )
    proc = ServerProcess(tiny_model, args=["--content-filter", str(tmp_path / "policy.json")])
    proc.start(tmp_path)
    try:
        client = _client(proc, "unused")
        r = client.completions.create(
            model="tiny-v3", prompt="hello", max_tokens=40, extra_body={"ignore_eos": True}
        )
        assert r.choices[0].finish_reason == "content_filter"
        assert not any(c.isalpha() and c.islower() and c.isascii() for c in r.choices[0].text)
        chunks = list(
            client.chat.completions.create(
                model="tiny-v3",
                messages=[{"role": "user", "content": "hi"}],
                max_tokens=40,
                stream=True,
                extra_body={"ignore_eos": True},
            )
        )
        assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "content_filter"
    finally:
        proc.stop()
