"""``tool_choice: required`` / a named function as a grammar: what it accepts, and what
random weights write under it.

The grammar is compiled by the engine's real xgrammar path over a make-tiny tokenizer
that has DeepSeek-V3's tool-call tokens, then walked token by token; the engine test
samples a model that knows nothing (random embeddings, an all-zero ``lm_head``: every
token the grammar allows is equally likely) and reads the answers back with the
server's own tool-call parser, validating the arguments against the tools' schemas.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import torch
from chain_model import TOOL_TOKENS, V3_TOOL_TEMPLATE, copy_with_tokens, write_chain_weights
from tokenizers import Tokenizer

from deepseek_runtime.backends.native import NativeEngineOptions, build_engine
from deepseek_runtime.checkpoint.make_tiny import make_tiny_checkpoint
from deepseek_runtime.engine import SamplingParams
from deepseek_runtime.engine.api import GuidedDecoding
from deepseek_runtime.engine.structured import StructuredOutputs, tokenizer_info
from deepseek_runtime.server.errors import APIError
from deepseek_runtime.server.protocol import ChatCompletionRequest
from deepseek_runtime.server.tool_calls import (
    CALL_BEGIN,
    CALL_END,
    CALLS_BEGIN,
    CALLS_END,
    SEP,
    parse_tool_calls,
)
from deepseek_runtime.server.tool_grammar import MARKERS, forced_tools, tool_choice_constraint

pytestmark = pytest.mark.unit

EOS = 1
TOKEN_MARKERS = frozenset(MARKERS)  # the checkpoint below has each as one token
WEATHER_PARAMS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 10},
        "unit": {"enum": ["c", "f"]},
    },
    "required": ["city", "unit"],
    "additionalProperties": False,
}
CLOCK_PARAMS: dict[str, Any] = {
    "type": "object",
    "properties": {"zone": {"enum": ["utc", "cet"]}},
    "required": ["zone"],
    "additionalProperties": False,
}
WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": WEATHER_PARAMS}}
CLOCK = {"type": "function", "function": {"name": "get_time", "parameters": CLOCK_PARAMS}}
SCHEMAS = {"get_weather": WEATHER_PARAMS, "get_time": CLOCK_PARAMS}


def body(**extra: Any) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": "x"}], **extra}
    )


def call(name: str, args: str) -> str:
    return CALL_BEGIN + "function" + SEP + name + "\n```json\n" + args + "\n```" + CALL_END


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = make_tiny_checkpoint(tmp_path_factory.mktemp("base") / "v3", "v3", seed=5)
    out = tmp_path_factory.mktemp("tools") / "tiny-v3-tools"
    copy_with_tokens(base, out, [*TOOL_TOKENS, "function", "</think>"], V3_TOOL_TEMPLATE)
    write_chain_weights(out, [])  # vocabulary grown to the new tokens; lm_head all zero
    return out


@pytest.fixture(scope="module")
def tokenizer(checkpoint: Path) -> Tokenizer:
    return Tokenizer.from_file(str(checkpoint / "tokenizer.json"))


def accepts(tok: Tokenizer, guided: GuidedDecoding, text: str) -> bool:
    """Whether the grammar lets ``text`` (then EOS) through, token by token."""
    size = tok.get_vocab_size(True)
    outputs = StructuredOutputs(tokenizer_info(tok, size, [EOS]))
    outputs.add_request("r", guided)
    for token in [*tok.encode(text, add_special_tokens=False).ids, EOS]:
        logits = torch.zeros(1, size)
        outputs.mask(logits, ["r"])
        if logits[0, token] == float("-inf"):
            return False
        done = outputs.accept("r", token)
    return done


def forced(reasoning: bool = False, **extra: Any) -> GuidedDecoding:
    guided = tool_choice_constraint(
        body(tools=[WEATHER, CLOCK], **extra), reasoning=reasoning, token_markers=TOKEN_MARKERS
    )
    assert guided is not None and guided.kind == "structural_tag"
    return guided


def test_only_required_and_named_choices_are_forced() -> None:
    tools = [WEATHER, CLOCK]
    assert forced_tools(body(tools=tools)) is None  # auto
    assert forced_tools(body(tools=tools, tool_choice="auto")) is None
    assert forced_tools(body(tools=tools, tool_choice="none")) is None
    assert tool_choice_constraint(body(tools=tools), reasoning=False) is None
    required = forced_tools(body(tools=tools, tool_choice="required"))
    assert [t.function.name for t in required or []] == ["get_weather", "get_time"]
    named = {"type": "function", "function": {"name": "get_time"}}
    assert [t.function.name for t in forced_tools(body(tools=tools, tool_choice=named)) or []] == [
        "get_time"
    ]


@pytest.mark.parametrize(
    "extra",
    [
        {"response_format": {"type": "json_object"}},
        {"guided_regex": "a+"},
        {"guided_choice": ["a", "b"]},
    ],
)
def test_a_forced_call_with_another_constraint_is_a_400(extra: dict[str, Any]) -> None:
    with pytest.raises(APIError) as err:
        tool_choice_constraint(
            body(tools=[WEATHER], tool_choice="required", **extra), reasoning=False
        )
    assert err.value.status == 400 and err.value.param == "tool_choice"


def test_required_accepts_exactly_calls_to_offered_tools(tokenizer: Tokenizer) -> None:
    guided = forced(tool_choice="required")
    one = CALLS_BEGIN + call("get_weather", '{"city":"Paris","unit":"c"}') + CALLS_END
    two = (
        CALLS_BEGIN
        + call("get_weather", '{"city":"Oslo","unit":"f"}')
        + "\n"
        + call("get_time", '{"zone":"utc"}')
        + CALLS_END
    )
    assert accepts(tokenizer, guided, one)
    assert accepts(tokenizer, guided, two)
    refused = {
        "prose": "It is sunny.",
        "prose first": "Checking." + one,
        "no call": CALLS_BEGIN + CALLS_END,
        "unknown tool": CALLS_BEGIN + call("get_tide", '{"zone":"utc"}') + CALLS_END,
        "bad arguments": CALLS_BEGIN + call("get_time", '{"zone":"mars"}') + CALLS_END,
        "missing argument": CALLS_BEGIN + call("get_weather", '{"city":"Paris"}') + CALLS_END,
        "unclosed": CALLS_BEGIN + call("get_time", '{"zone":"utc"}'),
    }
    for name, text in refused.items():
        assert not accepts(tokenizer, guided, text), name


def test_markers_that_are_not_tokens_are_matched_as_text(tokenizer: Tokenizer) -> None:
    as_text = tool_choice_constraint(
        body(tools=[CLOCK], tool_choice="required"), reasoning=False, token_markers=frozenset()
    )
    assert as_text is not None
    assert accepts(tokenizer, as_text, CALLS_BEGIN + call("get_time", '{"zone":"utc"}') + CALLS_END)


def test_a_named_choice_and_single_calls(tokenizer: Tokenizer) -> None:
    named = forced(tool_choice={"type": "function", "function": {"name": "get_time"}})
    time_call = CALLS_BEGIN + call("get_time", '{"zone":"cet"}') + CALLS_END
    assert accepts(tokenizer, named, time_call)
    weather = CALLS_BEGIN + call("get_weather", '{"city":"Rome","unit":"c"}') + CALLS_END
    assert not accepts(tokenizer, named, weather)
    single = forced(tool_choice="required", parallel_tool_calls=False)
    two = (
        CALLS_BEGIN + call("get_time", '{"zone":"cet"}') + "\n" + call("get_time", '{"zone":"utc"}')
    )
    assert accepts(tokenizer, single, time_call)
    assert not accepts(tokenizer, single, two + CALLS_END)


def test_with_reasoning_the_answer_thinks_first(tokenizer: Tokenizer) -> None:
    guided = forced(reasoning=True, tool_choice="required")
    answer = CALLS_BEGIN + call("get_time", '{"zone":"utc"}') + CALLS_END
    assert accepts(tokenizer, guided, "The user wants the time.</think>" + answer)
    assert not accepts(tokenizer, guided, answer)  # R1 closes its thinking first


def test_random_weights_under_the_grammar_always_call_a_tool(checkpoint: Path) -> None:
    engine, tok = build_engine(
        NativeEngineOptions(model_dir=checkpoint, dtype="float32", device="cpu")
    )
    prompt = [0, 40, 41, 42, 43]
    named = {"type": "function", "function": {"name": "get_weather"}}
    cases = [("required", None)] * 3 + [(named, "get_weather")] * 3
    params = [
        SamplingParams(
            max_tokens=120,
            temperature=1.0,
            seed=seed,
            guided=forced(tool_choice=choice, parallel_tool_calls=False),
        )
        for seed, (choice, _) in enumerate(cases)
    ]
    outs = engine.generate([prompt] * len(params), params)  # one batch, one compile per choice
    for out, (_, only) in zip(outs, cases, strict=True):
        content, calls = parse_tool_calls(tok.decode(out), set(SCHEMAS))
        assert content == "" and len(calls) == 1, tok.decode(out)
        (parsed,) = calls
        assert only is None or parsed.name == only
        jsonschema.validate(json.loads(parsed.arguments), SCHEMAS[parsed.name])
