"""R1 reasoning, DeepSeek tool calls, /tokenize and whole-token text, through the openai client.

Two real ``deepseek-runtime serve`` processes run chain checkpoints (``chain_model``):
tiny models whose real forward pass greedily writes the token path we chose, so the
answer's ``</think>`` and tool-call tokens come out of the engine like any model output.

* ``tools``: a DeepSeek-V3 checkpoint with V3's tool tokens and tool template, served
  with ``--tool-call-parser deepseek_v3``. After ``<｜Assistant｜>`` it writes a
  ``get_weather`` call; after the markers ``⟦eos⟧`` / ``⟦len⟧`` / ``⟦stop⟧`` it ends
  inside a multi-byte character by EOS, by length and by a stop token.
* ``r1``: an R1-Distill-Qwen checkpoint (its template opens ``<think>`` in the prompt),
  with ``DSR_REASONING_PARSER``; once with ``</think>`` a special token that decoding
  drops, once an ordinary one that decodes as text (DeepSeek-R1's tokenizers).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from chain_model import TOOL_TOKENS, V3_TOOL_TEMPLATE, copy_with_tokens, write_chain_weights
from openai.lib.streaming.chat import ChatCompletionStreamState
from server_harness import ServerProcess
from tokenizers import Tokenizer

from deepseek_runtime.checkpoint.make_tiny import make_tiny_checkpoint
from deepseek_runtime.server.tool_calls import CALL_BEGIN, CALL_END, CALLS_BEGIN, CALLS_END, SEP

pytestmark = pytest.mark.slow

BOS, EOS, USER_TOKEN, ASSISTANT, THINK_END = 0, 1, 2, 3, 5
WORDS = ["⟦eos⟧", "⟦len⟧", "⟦stop⟧", "Alpha", "Beta", "Gamma", "function", "get_weather"]
PIECES = ["\n```json\n", '{"city": ', '"Paris"}', "\n```"]
ANSWER = (
    "Checking."
    + CALLS_BEGIN
    + CALL_BEGIN
    + "function"
    + SEP
    + 'get_weather\n```json\n{"city": "Paris"}\n```'
    + CALL_END
    + CALLS_END
)
MID_CHARACTER = {"⟦eos⟧": "Alpha🙂", "⟦len⟧": "Betaé", "⟦stop⟧": "Gamma日"}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
CLOCK = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}
ASK = [{"role": "user", "content": "Weather in Paris?"}]


@dataclass
class Served:
    proc: ServerProcess
    client: openai.OpenAI
    tokenizer: Tokenizer
    chains: dict[str, list[int]]

    @property
    def name(self) -> str:
        return self.proc.model_dir.name

    def post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        return httpx.post(self.proc.url + path, json=body, timeout=30)


def _encode(tok: Tokenizer, text: str) -> list[int]:
    return list(tok.encode(text, add_special_tokens=False).ids)


def _serve(model: Path, logs: Path, args: list[str], env: dict[str, str]) -> ServerProcess:
    return ServerProcess(model, args=args, env=env).start(logs)


@pytest.fixture(scope="module")
def tools(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    base = make_tiny_checkpoint(tmp_path_factory.mktemp("base-v3") / "v3", "v3", seed=1)
    out = tmp_path_factory.mktemp("chain") / "tiny-v3-tools"
    tok = copy_with_tokens(base, out, TOOL_TOKENS + WORDS + PIECES, V3_TOOL_TEMPLATE)
    chains = {"answer": [ASSISTANT, *_encode(tok, ANSWER), EOS]}
    for marker, text in MID_CHARACTER.items():
        ids = _encode(tok, marker + text)
        # the character's bytes are separate tokens: the chain ends after its first two
        chains[marker] = ids[:4] + ([USER_TOKEN, EOS] if marker == "⟦stop⟧" else [EOS])
    write_chain_weights(out, list(chains.values()))
    proc = _serve(out, tmp_path_factory.mktemp("logs"), ["--tool-call-parser", "deepseek_v3"], {})
    yield Served(proc, openai.OpenAI(base_url=proc.url + "/v1", api_key="x"), tok, chains)
    proc.stop()


@pytest.fixture(scope="module", params=["think-special", "think-text"])
def r1(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """``think-special``: ``</think>`` decodes to nothing (make-tiny's tokenizer);
    ``think-text``: it decodes as text, as in DeepSeek-R1's own tokenizers."""
    base = make_tiny_checkpoint(tmp_path_factory.mktemp("base-qwen2") / "q", "qwen2", seed=1)
    out = tmp_path_factory.mktemp("chain") / "tiny-r1-distill"
    unspecial = ["<think>", "</think>"] if request.param == "think-text" else []
    tok = copy_with_tokens(base, out, ["Two", " plus", " two", "Four"], None, unspecial)
    newline = _encode(tok, "\n")[-1]  # the generation prompt ends "<｜Assistant｜><think>\n"
    thought, answer = _encode(tok, "Two plus two"), _encode(tok, "Four!")
    chains = {"r1": [newline, *thought, THINK_END, *answer, EOS]}
    write_chain_weights(out, list(chains.values()))
    env = {"DSR_REASONING_PARSER": "deepseek_r1"}
    proc = _serve(out, tmp_path_factory.mktemp("logs"), [], env)
    yield Served(proc, openai.OpenAI(base_url=proc.url + "/v1", api_key="x"), tok, chains)
    proc.stop()


def _extra(obj: Any, key: str) -> Any:
    return (obj.model_extra or {}).get(key)


# --- R1 reasoning ---------------------------------------------------------------------


def test_r1_answer_splits_reasoning_from_content(r1: Served) -> None:
    out = r1.client.chat.completions.create(
        model=r1.name, messages=ASK, temperature=0, max_tokens=32
    )
    message = out.choices[0].message
    assert _extra(message, "reasoning_content") == "Two plus two"
    assert message.content == "Four!"
    assert out.choices[0].finish_reason == "stop"


def test_r1_stream_sends_reasoning_deltas_before_content(r1: Served) -> None:
    stream = r1.client.chat.completions.create(
        model=r1.name, messages=ASK, temperature=0, max_tokens=32, stream=True
    )
    kinds, reasoning, content = [], "", ""
    for chunk in stream:
        delta = chunk.choices[0].delta
        if piece := _extra(delta, "reasoning_content"):
            kinds.append("reasoning")
            reasoning += piece
        if delta.content:
            kinds.append("content")
            content += delta.content
    assert (reasoning, content) == ("Two plus two", "Four!")
    assert kinds.index("content") > max(i for i, k in enumerate(kinds) if k == "reasoning")
    assert kinds.count("reasoning") >= 2  # streamed token by token, not at the end


def test_r1_cut_short_while_thinking_is_all_reasoning(r1: Served) -> None:
    out = r1.client.chat.completions.create(
        model=r1.name, messages=ASK, temperature=0, max_tokens=2
    )
    message = out.choices[0].message
    assert _extra(message, "reasoning_content") == "Two plus"
    assert not message.content
    assert out.choices[0].finish_reason == "length"


def test_tools_need_the_tool_call_parser(r1: Served) -> None:
    with pytest.raises(openai.BadRequestError, match="tool-call-parser"):
        r1.client.chat.completions.create(model=r1.name, messages=ASK, tools=[WEATHER])  # type: ignore[list-item]


# --- DeepSeek-V3 tool calls -----------------------------------------------------------


def _chat(served: Served, **kw: Any) -> Any:
    kw.setdefault("messages", ASK)
    kw.setdefault("tools", [WEATHER, CLOCK])
    kw.setdefault("max_tokens", 64)
    return served.client.chat.completions.create(model=served.name, temperature=0, **kw)


def _accumulated(served: Served, **kw: Any) -> Any:
    """A streamed answer merged chunk by chunk by the openai SDK's own stream state."""
    state = ChatCompletionStreamState()
    for chunk in _chat(served, stream=True, **kw):
        state.handle_chunk(chunk)
    return state.current_completion_snapshot


def test_tool_call_is_parsed(tools: Served) -> None:
    choice = _chat(tools).choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "Checking."
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}


def test_streamed_tool_call_accumulates_in_the_openai_sdk(tools: Served) -> None:
    whole = _chat(tools).choices[0]
    choice = _accumulated(tools).choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == whole.message.content == "Checking."
    (call,) = choice.message.tool_calls
    assert call.function.name == "get_weather"
    assert call.function.arguments == whole.message.tool_calls[0].function.arguments


@pytest.mark.parametrize(
    "kw",
    [
        {"tool_choice": "none"},
        {"tools": [CLOCK]},  # the model calls a tool the request did not offer
    ],
    ids=["none", "not-offered"],
)
def test_answers_without_an_allowed_call_are_plain_content(
    tools: Served, kw: dict[str, Any]
) -> None:
    choice = _chat(tools, **kw).choices[0]
    assert choice.finish_reason == "stop"
    assert choice.message.content == ANSWER
    assert not choice.message.tool_calls


def test_named_and_required_tool_choice_return_the_call(tools: Served) -> None:
    """Forced choices are a grammar: the prose the model would write first is masked."""
    for choice_arg in ("required", {"type": "function", "function": {"name": "get_weather"}}):
        choice = _chat(tools, tool_choice=choice_arg).choices[0]
        assert choice.finish_reason == "tool_calls"
        assert not choice.message.content
        assert [c.function.name for c in choice.message.tool_calls] == ["get_weather"]
        assert json.loads(choice.message.tool_calls[0].function.arguments) == {"city": "Paris"}


@pytest.mark.parametrize("stream", [False, True])
def test_a_named_choice_overrides_what_the_model_would_call(tools: Served, stream: bool) -> None:
    """The model writes a get_weather call; naming get_time makes the answer call get_time."""
    named = {"type": "function", "function": {"name": "get_time"}}
    if stream:
        choice = _accumulated(tools, tool_choice=named).choices[0]
    else:
        choice = _chat(tools, tool_choice=named).choices[0]
    assert choice.finish_reason == "tool_calls"
    assert [c.function.name for c in choice.message.tool_calls] == ["get_time"]
    assert json.loads(choice.message.tool_calls[0].function.arguments) == {"city": "Paris"}


def test_a_forced_choice_with_response_format_is_a_400(tools: Served) -> None:
    with pytest.raises(openai.BadRequestError, match="response_format"):
        _chat(tools, tool_choice="required", response_format={"type": "json_object"})


@pytest.mark.parametrize("stream", [False, True])
def test_a_call_cut_off_by_max_tokens_degrades_to_content(tools: Served, stream: bool) -> None:
    cut = tools.chains["answer"][1:12]
    expected = tools.tokenizer.decode(cut)
    if not stream:
        choice = _chat(tools, max_tokens=len(cut)).choices[0]
        assert (choice.message.content, choice.message.tool_calls) == (expected, None)
        assert choice.finish_reason == "length"
        return
    final = _accumulated(tools, tools=[WEATHER], max_tokens=len(cut)).choices[0]
    assert final.message.content == expected and not final.message.tool_calls
    assert final.finish_reason == "length"


def test_earlier_calls_and_results_render_with_the_template(tools: Served) -> None:
    first = _chat(tools).choices[0].message
    call = first.tool_calls[0]
    messages = [
        *ASK,
        {"role": "assistant", "content": first.content, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": '{"temp_c": 21}'},
    ]
    out = _chat(tools, messages=messages)
    assert out.choices[0].message.tool_calls[0].function.name == "get_weather"
    counted = tools.post("/tokenize", {"messages": messages, "tools": [WEATHER, CLOCK]}).json()[
        "count"
    ]
    assert counted == out.usage.prompt_tokens
    rendered = tools.tokenizer.decode(
        tools.post("/tokenize", {"messages": messages}).json()["tokens"], skip_special_tokens=False
    )
    assert CALL_BEGIN + "function" + SEP + "get_weather" in rendered
    assert "<｜tool▁output▁begin｜>" + '{"temp_c": 21}' in rendered


def test_tool_choice_misuse_is_a_400(tools: Served) -> None:
    with pytest.raises(openai.BadRequestError, match="tool_choice"):
        _chat(tools, tools=None, tool_choice="required")
    with pytest.raises(openai.BadRequestError, match="not in tools"):
        _chat(tools, tool_choice={"type": "function", "function": {"name": "nope"}})


# --- /tokenize, /detokenize, /v1/models ------------------------------------------------


def test_tokenize_and_detokenize_match_vllm_shapes(tools: Served) -> None:
    limit = tools.client.models.list().data[0].model_extra["max_model_len"]
    assert isinstance(limit, int) and limit > 0
    text = "Alpha Beta 🙂"
    body = tools.post("/tokenize", {"model": tools.name, "prompt": text, "return_token_strs": True})
    assert body.status_code == 200, body.text
    got = body.json()
    ids = tools.tokenizer.encode(text).ids  # with BOS: add_special_tokens defaults to true
    assert got == {
        "count": len(ids),
        "max_model_len": limit,
        "tokens": ids,
        "token_strs": got["token_strs"],
    }
    assert len(got["token_strs"]) == len(ids)
    plain = tools.post("/tokenize", {"prompt": text, "add_special_tokens": False}).json()
    assert plain["tokens"] == ids[1:] and plain["token_strs"] is None
    assert tools.post("/detokenize", {"tokens": ids}).json() == {"prompt": text}
    chat = tools.post("/tokenize", {"messages": ASK}).json()
    usage = _chat(tools, tools=None).usage
    assert chat["count"] == usage.prompt_tokens


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/tokenize", {"model": "other", "prompt": "x"}),
        ("/tokenize", {"prompt": "x", "messages": ASK}),
        ("/tokenize", {}),
        ("/detokenize", {"tokens": [10**6]}),
        ("/detokenize", {"tokens": [-1]}),
    ],
)
def test_tokenize_refusals_are_400s(tools: Served, path: str, body: dict[str, Any]) -> None:
    assert tools.post(path, body).status_code in {400, 422}


# --- the text equals its tokens ----------------------------------------------------------


@pytest.mark.parametrize(
    ("marker", "kw", "reason"),
    [
        ("⟦eos⟧", {}, "stop"),
        ("⟦len⟧", {"max_tokens": 2}, "length"),
        ("⟦stop⟧", {"stop_token_ids": [USER_TOKEN]}, "stop"),
    ],
    ids=["eos", "length", "stop-token"],
)
@pytest.mark.parametrize("stream", [False, True])
def test_final_text_is_the_decoding_of_every_token(
    tools: Served, marker: str, kw: dict[str, Any], reason: str, stream: bool
) -> None:
    """Ended inside a multi-byte character, the last bytes still come back (as U+FFFD)."""
    kw, chain = dict(kw), tools.chains[marker]
    generated = chain[1 : 1 + kw["max_tokens"]] if "max_tokens" in kw else chain[1:]
    expected = tools.tokenizer.decode(generated)
    assert expected.endswith("\ufffd")
    max_tokens = kw.pop("max_tokens", 16)
    args: dict[str, Any] = {"model": tools.name, "prompt": marker, "temperature": 0}
    out = tools.client.completions.create(
        **args, max_tokens=max_tokens, stream=stream, extra_body=kw
    )
    if stream:
        chunks = list(out)
        text = "".join(c.choices[0].text for c in chunks if c.choices)
        finish = chunks[-1].choices[0].finish_reason
    else:
        text, finish = out.choices[0].text, out.choices[0].finish_reason
    assert (text, finish) == (expected, reason)
