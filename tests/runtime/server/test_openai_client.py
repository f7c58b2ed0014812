"""The official ``openai`` client against a real server process serving a tiny checkpoint."""

from __future__ import annotations

import httpx
import openai
import pytest
from server_harness import ServerProcess

pytestmark = [pytest.mark.slow]


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)


@pytest.fixture(scope="module")
def model(client: openai.OpenAI) -> str:
    return client.models.list().data[0].id


def test_models(client: openai.OpenAI) -> None:
    models = client.models.list().data
    assert [m.id for m in models] == ["tiny-v3"]


def test_completion_text_and_usage(client: openai.OpenAI, model: str) -> None:
    r = client.completions.create(model=model, prompt="hello world", max_tokens=6, temperature=0)
    assert r.object == "text_completion"
    assert r.choices[0].finish_reason in {"length", "stop"}
    assert r.usage is not None and r.usage.prompt_tokens > 0
    if r.choices[0].finish_reason == "length":
        assert r.usage.completion_tokens == 6
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_completion_token_ids_and_list(client: openai.OpenAI, model: str) -> None:
    r = client.completions.create(
        model=model,
        prompt=[[5, 6, 7], [8, 9]],
        max_tokens=3,
        temperature=0,
        extra_body={"ignore_eos": True},
    )
    assert [c.index for c in r.choices] == [0, 1]
    assert r.usage is not None and r.usage.prompt_tokens == 5
    assert r.usage.completion_tokens == 6


def test_greedy_is_deterministic_and_seed_repeats(client: openai.OpenAI, model: str) -> None:
    a = client.completions.create(model=model, prompt="abc", max_tokens=8, temperature=0)
    b = client.completions.create(model=model, prompt="abc", max_tokens=8, temperature=0)
    assert a.choices[0].text == b.choices[0].text
    kw = {"model": model, "prompt": "abc", "max_tokens": 8, "temperature": 1.0, "seed": 7}
    c = client.completions.create(**kw)
    d = client.completions.create(**kw)
    assert c.choices[0].text == d.choices[0].text


def test_completion_stream_with_usage(client: openai.OpenAI, model: str) -> None:
    chunks = list(
        client.completions.create(
            model=model,
            prompt="once upon",
            max_tokens=5,
            stream=True,
            temperature=0,
            stream_options={"include_usage": True},
            extra_body={"ignore_eos": True},
        )
    )
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    full = client.completions.create(
        model=model,
        prompt="once upon",
        max_tokens=5,
        temperature=0,
        extra_body={"ignore_eos": True},
    )
    assert text == full.choices[0].text
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 5
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"


def test_echo_and_logprobs_stream_like_the_whole_answer(client: openai.OpenAI, model: str) -> None:
    prompt = "once upon"
    whole = client.completions.create(
        model=model,
        prompt=prompt,
        max_tokens=4,
        temperature=0,
        echo=True,
        logprobs=0,
        extra_body={"ignore_eos": True},
    )
    chunks = client.completions.create(
        model=model,
        prompt=prompt,
        max_tokens=4,
        temperature=0,
        echo=True,
        logprobs=0,
        extra_body={"ignore_eos": True},
        stream=True,
    )
    streamed = [c.choices[0] for c in chunks if c.choices]
    assert whole.choices[0].text.startswith(prompt)
    assert "".join(c.text for c in streamed) == whole.choices[0].text
    assert streamed[0].text.startswith(prompt)  # the echo leads the first chunk only
    assert not any(c.text.startswith(prompt) for c in streamed[1:])
    # echo + logprobs: the prompt's entries first (vLLM's prompt_logprobs: the first is
    # null), then the 4 generated tokens, whose offsets start after the echoed prompt
    lp = whole.choices[0].logprobs
    assert lp is not None and (lp.token_logprobs or [])[:1] == [None]
    assert (lp.text_offset or [])[-4] == len(prompt)
    first = streamed[0].logprobs
    assert first is not None and (first.token_logprobs or [])[:1] == [None]
    assert first.text_offset == (lp.text_offset or [])[: len(first.text_offset or [])]


def test_chat_non_streamed(client: openai.OpenAI, model: str) -> None:
    r = client.chat.completions.create(
        model=model,
        messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
        max_tokens=4,
    )
    assert r.object == "chat.completion"
    assert r.choices[0].message.role == "assistant"
    assert isinstance(r.choices[0].message.content, str)
    assert r.usage is not None and r.usage.completion_tokens <= 4


def test_chat_stream_n2_usage(client: openai.OpenAI, model: str) -> None:
    stream = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "hi"}],
        max_tokens=4,
        n=2,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"ignore_eos": True},
        seed=3,
    )
    texts = {0: "", 1: ""}
    roles, finish = set(), {}
    usage = None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for ch in chunk.choices:
            if ch.delta.role:
                roles.add(ch.index)
            texts[ch.index] += ch.delta.content or ""
            if ch.finish_reason:
                finish[ch.index] = ch.finish_reason
    assert roles == {0, 1}
    assert finish == {0: "length", 1: "length"}
    assert usage is not None and usage.completion_tokens == 8


def test_logprobs(client: openai.OpenAI, model: str) -> None:
    r = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "x"}],
        max_tokens=3,
        logprobs=True,
        top_logprobs=2,
        extra_body={"ignore_eos": True},
    )
    content = r.choices[0].logprobs.content  # type: ignore[union-attr]
    assert content is not None and len(content) == 3
    assert all(len(t.top_logprobs) == 2 and t.logprob <= 0 for t in content)
    c = client.completions.create(
        model=model, prompt="x", max_tokens=3, logprobs=1, extra_body={"ignore_eos": True}
    )
    lp = c.choices[0].logprobs
    assert lp is not None and len(lp.token_logprobs or []) == 3
    assert len(lp.top_logprobs or []) == 3


def test_stop_string_and_extras(client: openai.OpenAI, model: str) -> None:
    base = client.completions.create(
        model=model, prompt="tell", max_tokens=12, temperature=0, extra_body={"ignore_eos": True}
    )
    text = base.choices[0].text
    stop = text[3:6] if len(text) >= 6 and text[3:6].strip() else None
    if stop:
        r = client.completions.create(
            model=model,
            prompt="tell",
            max_tokens=12,
            temperature=0,
            stop=[stop],
            extra_body={"ignore_eos": True},
        )
        assert stop not in r.choices[0].text and r.choices[0].finish_reason == "stop"
    r = client.completions.create(
        model=model,
        prompt="tell",
        max_tokens=4,
        extra_body={"top_k": 5, "min_p": 0.05, "repetition_penalty": 1.2},
    )
    assert r.choices[0].finish_reason in {"length", "stop"}


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"prompt": "x", "max_tokens": 0}, "max_tokens"),
        ({"prompt": "x", "max_tokens": 10**7}, "max_tokens"),
        ({"prompt": "x", "n": 1000}, "n"),
        ({"prompt": "x", "stop": [""]}, "stop"),
        ({"prompt": "x", "temperature": "hot"}, "temperature"),
        ({"prompt": 5}, "prompt"),
        ({"prompt": "x", "model": "other"}, "model"),
        ({"prompt": "word " * 5000}, "prompt"),
    ],
)
def test_bad_input_is_400_naming_the_field(
    client: openai.OpenAI, model: str, body: dict[str, object], param: str
) -> None:
    kwargs = {"model": model, **body}
    with pytest.raises(openai.BadRequestError) as err:
        client.completions.create(**kwargs)  # type: ignore[call-overload]
    assert err.value.status_code == 400
    assert err.value.body["param"] == param  # type: ignore[index]


def test_malformed_json_unknown_route_and_big_body(server: ServerProcess) -> None:
    r = httpx.post(
        server.url + "/v1/completions",
        content=b"{not json",
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"
    r = httpx.get(server.url + "/v1/nothing-here")
    assert r.status_code == 404 and "error" in r.json()
    r = httpx.post(
        server.url + "/v1/completions",
        content=b"x" * (5 << 20),
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 413


def test_probes(server: ServerProcess) -> None:
    assert httpx.get(server.url + "/health").json() == {"status": "ok"}
    assert httpx.get(server.url + "/ready").json()["ready"] is True
    assert "version" in httpx.get(server.url + "/version").json()
    text = server.metrics()
    for name in (
        "vllm:num_requests_running",
        "vllm:kv_cache_usage_perc",
        "vllm:prompt_tokens_total",
        "vllm:generation_tokens_total",
        "vllm:request_success_total",
        "vllm:time_to_first_token_seconds_bucket",
        "vllm:inter_token_latency_seconds_bucket",
        "vllm:e2e_request_latency_seconds",
        "vllm:prefix_cache_queries_total",
        "process_resident_memory_bytes",
    ):
        assert name in text, name
    assert 'model_name="tiny-v3"' in text
