"""Fault injection (``serve --fault-injection``): off by default; when on, a real server
fails the asked share of /v1 requests with 5xx, delays them, leaves the probes alone and
counts the errors in ``http_requests_total``, seen through the real openai client."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from server_harness import ServerProcess

from deepseek_runtime.server.fault_injection import FaultSpec, parse_fault_spec

pytestmark = [pytest.mark.slow]


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("error-rate=0.3,delay-ms=200", FaultSpec(0.3, 200)),
        ("error-rate=1, status=503, seed=7", FaultSpec(1.0, 0, 503, 7)),
        ("delay-ms=5", FaultSpec(0.0, 5)),
        ("token-delay-ms=40", FaultSpec(token_delay_ms=40)),
        ("", FaultSpec()),
    ],
)
def test_parse(text: str, want: FaultSpec) -> None:
    assert parse_fault_spec(text) == want
    assert parse_fault_spec(text).active == (want != FaultSpec())


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("error-rate=2", "between 0 and 1"),
        ("status=404", "5xx"),
        ("error-rat=0.1", "unknown key"),
        ("delay-ms=soon", "not a number"),
        ("error-rate", "not key=value"),
        ("token-delay-ms=-1", "between 0 and 60000"),
    ],
)
def test_parse_rejects(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_fault_spec(text)


def _server_errors(url: str) -> float:
    text = httpx.get(url + "/metrics", timeout=10).text
    return sum(
        float(m.group(1))
        for m in re.finditer(r'^http_requests_total\{[^}]*status="500"[^}]*\} (\S+)$', text, re.M)
    )


@pytest.fixture(scope="module")
def faulty(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(
        tiny_model, args=["--fault-injection", "error-rate=0.5,delay-ms=150,seed=3"]
    )
    proc.start(tmp_path_factory.mktemp("faulty"))
    yield proc
    proc.stop()


def test_injects_errors_and_delay_through_the_openai_client(faulty: ServerProcess) -> None:
    client = openai.OpenAI(base_url=faulty.url + "/v1", api_key="none", max_retries=0)
    ok = failed = 0
    started = time.perf_counter()
    for _ in range(20):
        try:
            client.completions.create(
                model=client.models.list().data[0].id, prompt="hi", max_tokens=1
            )
            ok += 1
        except openai.InternalServerError as exc:
            assert exc.status_code == 500
            assert exc.body is not None and "injected fault" in str(exc.body)
            failed += 1
        except openai.APIStatusError:
            failed += 1  # models.list itself failed (also a /v1 request)
    elapsed = time.perf_counter() - started
    assert ok > 0 and failed > 0  # seeded 50 %: both happen in 20 tries
    assert elapsed >= 20 * 0.15  # every /v1 request waited delay-ms
    assert _server_errors(faulty.url) >= failed  # counted like any other 5xx
    assert "FAULT INJECTION ON" in faulty.log()
    for probe in ("/health", "/ready", "/metrics"):  # probes untouched: the pod stays Ready
        assert httpx.get(faulty.url + probe, timeout=5).status_code == 200


def _histogram(url: str, name: str) -> tuple[float, float]:
    """(sum, count) of one of the runtime's histograms, from its /metrics."""
    text = httpx.get(url + "/metrics", timeout=10).text
    values = {}
    for part in ("sum", "count"):
        match = re.search(rf"^{re.escape(name)}_{part}\{{[^}}]*\}} (\S+)$", text, re.M)
        assert match is not None, (name, part)
        values[part] = float(match.group(1))
    return values["sum"], values["count"]


def test_token_delay_makes_the_runtime_slow_in_its_latency_metrics(
    tiny_model: Path, tmp_path: Path
) -> None:
    """``token-delay-ms`` is a slow revision: TTFT and end-to-end latency, as the canary's
    built-in queries read them, grow by the delay (``delay-ms`` would not show there)."""
    proc = ServerProcess(tiny_model, args=["--fault-injection", "token-delay-ms=300"])
    proc.start(tmp_path)
    try:
        client = openai.OpenAI(base_url=proc.url + "/v1", api_key="none", max_retries=0)
        model = client.models.list().data[0].id
        for _ in range(3):
            started = time.perf_counter()
            stream = client.completions.create(
                model=model, prompt="hi", max_tokens=3, stream=True, extra_body={"ignore_eos": True}
            )
            first = next(iter(stream))
            ttft = time.perf_counter() - started
            assert first.choices[0].text is not None and ttft >= 0.3
            list(stream)
        ttft_sum, ttft_count = _histogram(proc.url, "vllm:time_to_first_token_seconds")
        e2e_sum, e2e_count = _histogram(proc.url, "vllm:e2e_request_latency_seconds")
        assert ttft_count == e2e_count == 3
        assert ttft_sum / ttft_count >= 0.3
        # the first token's update and at least one more, each 300 ms late (tokens the
        # engine makes meanwhile are merged into the next update it hands over)
        assert e2e_sum / e2e_count >= 0.6
        assert "each output update 300 ms" in proc.log()
    finally:
        proc.stop()


def test_off_by_default(server: ServerProcess) -> None:
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="none", max_retries=0)
    model = client.models.list().data[0].id
    for _ in range(10):
        client.completions.create(model=model, prompt="hi", max_tokens=1)
    assert "FAULT INJECTION" not in server.log()
