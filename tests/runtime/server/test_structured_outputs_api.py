"""Structured outputs through the openai client against a real ``deepseek-runtime serve``.

The server runs the tiny random-weight checkpoint, so nothing but the grammar mask makes
its output JSON: every answer must parse and validate with ``jsonschema``. Constrained and
free requests are sent concurrently so that the engine batches them together.
"""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import jsonschema
import openai
import pytest
from server_harness import ServerProcess

pytestmark = pytest.mark.slow

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 10},
        "population": {"type": "integer", "minimum": 0, "maximum": 999999},
        "capital": {"type": "boolean"},
        "tags": {"type": "array", "items": {"enum": ["old", "new"]}, "maxItems": 3},
    },
    "required": ["city", "population", "capital", "tags"],
    "additionalProperties": False,
}
MESSAGES: list[Any] = [{"role": "user", "content": "Describe a city as JSON."}]


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)


def schema_format(strict: bool = True) -> Any:
    return {
        "type": "json_schema",
        "json_schema": {"name": "city", "schema": SCHEMA, "strict": strict},
    }


def test_json_schema_batched_with_free_requests(client: openai.OpenAI) -> None:
    def constrained(seed: int) -> tuple[str, str | None]:
        out = client.chat.completions.create(
            model="tiny-v3",
            messages=MESSAGES,
            response_format=schema_format(strict=seed % 2 == 0),
            max_tokens=200,
            seed=seed,
        )
        return out.choices[0].message.content or "", out.choices[0].finish_reason

    def free(seed: int) -> str:
        out = client.completions.create(model="tiny-v3", prompt="hello", max_tokens=24, seed=seed)
        return out.choices[0].text

    with ThreadPoolExecutor(8) as pool:
        jobs = [pool.submit(constrained, s) for s in range(6)]
        frees = [pool.submit(free, s) for s in range(3)]
        results = [j.result() for j in jobs]
        assert all(isinstance(f.result(), str) for f in frees)
    for text, reason in results:
        jsonschema.validate(json.loads(text), SCHEMA)
        assert reason == "stop"


def test_json_schema_streamed(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="tiny-v3",
        messages=MESSAGES,
        response_format=schema_format(),
        max_tokens=200,
        seed=11,
        stream=True,
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    jsonschema.validate(json.loads(text), SCHEMA)


def test_json_object(client: openai.OpenAI) -> None:
    for seed in range(2):
        out = client.chat.completions.create(
            model="tiny-v3",
            messages=MESSAGES,
            response_format={"type": "json_object"},
            max_tokens=400,
            seed=seed,
        )
        assert isinstance(json.loads(out.choices[0].message.content or ""), dict)


def test_vllm_guided_choice_regex_and_json(client: openai.OpenAI) -> None:
    choices = ["positive", "negative", "neutral"]
    for seed in range(3):
        out = client.completions.create(
            model="tiny-v3",
            prompt="Sentiment:",
            max_tokens=20,
            seed=seed,
            extra_body={"guided_choice": choices},
        )
        assert out.choices[0].text in choices
        out = client.completions.create(
            model="tiny-v3",
            prompt="Code:",
            max_tokens=20,
            seed=seed,
            extra_body={"guided_regex": r"[A-Z]{2}-\d{3}"},
        )
        assert re.fullmatch(r"[A-Z]{2}-\d{3}", out.choices[0].text)
    chat = client.chat.completions.create(
        model="tiny-v3",
        messages=MESSAGES,
        max_tokens=200,
        seed=5,
        extra_body={"guided_json": SCHEMA},
    )
    jsonschema.validate(json.loads(chat.choices[0].message.content or ""), SCHEMA)


@pytest.mark.parametrize(
    "extra",
    [
        {
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "x", "schema": {"type": "nosuch"}},
            }
        },
        {"guided_regex": "(unclosed"},
        {"guided_json": "{not json"},
        {"guided_regex": "a+", "guided_choice": ["a"]},
        {"response_format": {"type": "json_schema"}},
    ],
)
def test_invalid_constraints_are_400(client: openai.OpenAI, extra: dict[str, Any]) -> None:
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(
            model="tiny-v3", messages=MESSAGES, max_tokens=8, extra_body=extra
        )
