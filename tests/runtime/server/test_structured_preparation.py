"""Pure parts of structured outputs and scoring: request fields to engine constraints,
and the echoed prompt's logprob entries."""

from __future__ import annotations

import json
from typing import Any

import pytest

from deepseek_runtime.engine.api import GuidedDecoding, TokenLogprob
from deepseek_runtime.server.errors import APIError
from deepseek_runtime.server.protocol import ChatCompletionRequest
from deepseek_runtime.server.responses import echo_logprobs
from deepseek_runtime.server.structured_outputs import guided_decoding

pytestmark = pytest.mark.unit


def body(**extra: Any) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": "x"}], **extra}
    )


def test_each_field_becomes_one_constraint() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    fmt = {"type": "json_schema", "json_schema": {"name": "s", "schema": schema, "strict": True}}
    by_format = guided_decoding(body(response_format=fmt))
    by_vllm = guided_decoding(body(guided_json=json.dumps(schema)))
    assert by_format == by_vllm == GuidedDecoding("json_schema", json.dumps(schema, sort_keys=True))
    assert guided_decoding(body(response_format={"type": "json_object"})) == GuidedDecoding(
        "json_object"
    )
    assert guided_decoding(body(response_format={"type": "text"})) is None
    assert guided_decoding(body(guided_regex="a+")) == GuidedDecoding("regex", "a+")
    choice = guided_decoding(body(guided_choice=["x", "y"]))
    assert choice is not None and json.loads(choice.spec) == ["x", "y"]
    assert guided_decoding(body()) is None


@pytest.mark.parametrize(
    "extra",
    [
        {"guided_regex": "a", "guided_choice": ["a"]},
        {"guided_json": "{oops"},
        {"guided_json": "[1, 2]"},
        {"guided_choice": ["", "a"]},
    ],
)
def test_conflicting_or_malformed_constraints_are_400(extra: dict[str, Any]) -> None:
    with pytest.raises(APIError) as err:
        guided_decoding(body(**extra))
    assert err.value.status == 400


def test_echo_logprobs_first_token_has_none() -> None:
    text = {1: "a", 2: "bc", 3: "d"}.__getitem__
    items = [None, TokenLogprob(2, -1.5, ((2, -1.5), (3, -2.0))), TokenLogprob(3, -0.5, ())]
    out = echo_logprobs([1, 2, 3], items, text)
    assert out["tokens"] == ["a", "bc", "d"]
    assert out["token_logprobs"] == [None, -1.5, -0.5]
    assert out["top_logprobs"] == [None, {"bc": -1.5, "d": -2.0}, {}]
    assert out["text_offset"] == [0, 1, 3]
