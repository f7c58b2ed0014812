"""Pure parsers of chat answers: R1 reasoning, DeepSeek tool calls, both, and tool_choice.

Every case is checked whole and streamed in every two-piece split and character by
character, because a stream may cut a marker anywhere and must still give the same
message.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletionChunk

from deepseek_runtime.server.chat_output import ChatDelta, ChatOutputOptions, ChoiceParser
from deepseek_runtime.server.chat_responses import ChatBody, ChatChunks
from deepseek_runtime.server.chat_tools import allowed_tool_names, template_tools
from deepseek_runtime.server.errors import APIError
from deepseek_runtime.server.generation import Update
from deepseek_runtime.server.protocol import ChatCompletionRequest
from deepseek_runtime.server.reasoning import ReasoningSplitter, split_reasoning
from deepseek_runtime.server.responses import ChoiceBuffer, ResponseHead
from deepseek_runtime.server.tool_calls import (
    CALL_BEGIN,
    CALL_END,
    CALLS_BEGIN,
    CALLS_END,
    SEP,
    MalformedCallError,
    ParsedCall,
    parse_call,
    parse_tool_calls,
)

pytestmark = pytest.mark.unit


def v3_call(name: str, args: str) -> str:
    return f"{CALL_BEGIN}function{SEP}{name}\n```json\n{args}\n```{CALL_END}"


def pieces(text: str) -> Iterator[list[str]]:
    """The text whole, in every two-piece split, and one character at a time."""
    yield [text]
    for cut in range(1, len(text)):
        yield [text[:cut], text[cut:]]
    yield list(text)


def streamed_reasoning(parts: list[str]) -> tuple[str, str]:
    splitter = ReasoningSplitter()
    outs = [splitter.feed(p) for p in parts] + [splitter.finish()]
    return "".join(o.reasoning for o in outs), "".join(o.content for o in outs)


@pytest.mark.parametrize(
    ("text", "reasoning", "content"),
    [
        # the template opened <think>: the output holds only the closing tag
        ("\nweigh it up\n</think>\n\nThe answer is 4.", "\nweigh it up\n", "\n\nThe answer is 4."),
        # the model opened it itself
        ("<think>short</think>Four.", "short", "Four."),
        # cut off while thinking: all of it is reasoning
        ("still thinking <", "still thinking <", ""),
        ("no closing tag </thin", "no closing tag </thin", ""),
        ("</think>only an answer", "", "only an answer"),
        ("<thi", "<thi", ""),
        ("a < b </think> c </think> d", "a < b ", " c </think> d"),
    ],
)
def test_reasoning_split_whole_and_streamed(text: str, reasoning: str, content: str) -> None:
    assert split_reasoning(text) == (reasoning, content)
    for parts in pieces(text):
        assert streamed_reasoning(parts) == (reasoning, content), parts


def test_reasoning_never_emits_part_of_the_closing_tag() -> None:
    splitter = ReasoningSplitter()
    assert splitter.feed("plan </th").reasoning == "plan "
    out = splitter.feed("ink>done")
    assert (out.reasoning, out.content) == ("", "done")
    assert not splitter.in_reasoning


def test_a_special_closing_token_ends_the_block_by_its_id() -> None:
    """Tokenizers that mark ``</think>`` special drop it from the text; its id still counts."""
    splitter = ReasoningSplitter(end_token_id=5)
    assert splitter.feed("think", [40]).reasoning == "think"
    assert splitter.feed("", [5]).reasoning == ""
    assert not splitter.in_reasoning
    assert splitter.feed("answer", [41]).content == "answer"
    assert split_reasoning("x", end_token_id=5) == ("x", "")


WEATHER = v3_call("get_weather", '{"city": "Paris", "unit": "celsius"}')
TIME_V31 = f"{CALL_BEGIN}get_time{SEP}" + '{"tz": "UTC"}' + CALL_END
NAMES = frozenset({"get_weather", "get_time"})


def streamed_tools(parts: list[str], names: frozenset[str] = NAMES) -> tuple[str, list[ParsedCall]]:
    parser = ChoiceParser(ChatOutputOptions(tool_names=names))
    total = ChatDelta()
    for p in parts:
        total.extend(parser.feed(p))
    total.extend(parser.finish())
    return total.content, total.calls


@pytest.mark.parametrize(
    ("text", "content", "calls"),
    [
        (
            "Let me check." + CALLS_BEGIN + WEATHER + TIME_V31 + CALLS_END,
            "Let me check.",
            [
                ParsedCall("get_weather", '{"city":"Paris","unit":"celsius"}'),
                ParsedCall("get_time", '{"tz":"UTC"}'),
            ],
        ),
        (
            CALLS_BEGIN + WEATHER + CALLS_END,
            "",
            [ParsedCall("get_weather", '{"city":"Paris","unit":"celsius"}')],
        ),
        ("no tools here <｜tool", "no tools here <｜tool", []),
        # malformed: arguments that are not JSON, an unknown name, a call never closed
        (CALLS_BEGIN + v3_call("get_weather", "{city: Paris}") + CALLS_END, None, []),
        (CALLS_BEGIN + v3_call("rm_rf", "{}") + CALLS_END, None, []),
        ("Hi" + CALLS_BEGIN + CALL_BEGIN + "function" + SEP + "get_weather\n```json\n{", None, []),
        (CALLS_BEGIN + v3_call("get_weather", "[1, 2]") + CALLS_END, None, []),
    ],
)
def test_tool_calls_whole_and_streamed(
    text: str, content: str | None, calls: list[ParsedCall]
) -> None:
    expected = (text if content is None else content, calls)
    assert parse_tool_calls(text, NAMES) == expected
    for parts in pieces(text):
        assert streamed_tools(parts) == expected, parts


def test_a_bad_call_after_a_good_one_keeps_the_good_one() -> None:
    bad = v3_call("get_weather", "{oops")
    text = CALLS_BEGIN + WEATHER + bad + CALLS_END
    content, calls = parse_tool_calls(text, NAMES)
    assert [c.name for c in calls] == ["get_weather"]
    assert content == bad + CALLS_END
    for parts in pieces(text):
        assert streamed_tools(parts) == (content, calls)


def test_arguments_are_compact_json_objects() -> None:
    call = parse_call(f'function{SEP}get_weather\n```json\n{{ "a" : [1, 2] }}\n```', NAMES)
    assert json.loads(call.arguments) == {"a": [1, 2]}
    assert call.arguments == '{"a":[1,2]}'
    with pytest.raises(MalformedCallError):
        parse_call("function get_weather {}", NAMES)
    with pytest.raises(MalformedCallError):
        parse_call(f"function{SEP}get_weather\n```json\n{{}}", NAMES)


def test_reasoning_then_tool_calls() -> None:
    """R1-0528 thinks, then calls tools: calls are only looked for after ``</think>``."""
    text = (
        "I might write "
        + CALLS_BEGIN
        + " here</think>Checking."
        + CALLS_BEGIN
        + WEATHER
        + CALLS_END
    )
    options = ChatOutputOptions(reasoning=True, tool_names=NAMES)
    for parts in pieces(text):
        parser, total = ChoiceParser(options), ChatDelta()
        for p in parts:
            total.extend(parser.feed(p))
        total.extend(parser.finish())
        assert total.reasoning == "I might write " + CALLS_BEGIN + " here"
        assert total.content == "Checking."
        assert [c.name for c in total.calls] == ["get_weather"]


def _update(index: int, text: str, finished: bool = False) -> Update:
    return Update(index, text, [7], [], finished, "stop" if finished else None, 1)


def test_chunks_cut_anywhere_accumulate_to_the_whole_body() -> None:
    """Rendered chunks of a stream split at every character merge (in the openai SDK) into
    the same message the whole answer has."""
    head = ResponseHead("chatcmpl-abc", 0, "m")
    options = ChatOutputOptions(reasoning=True, tool_names=NAMES)
    text = "why</think>Checking." + CALLS_BEGIN + WEATHER + TIME_V31 + CALLS_END
    buf = ChoiceBuffer()
    for i, ch in enumerate(text):
        buf.add(_update(0, ch, finished=i == len(text) - 1))
    whole = ChatBody(head, str, None, options).body([buf], 3, len(text))["choices"][0]
    state = ChatCompletionStreamState()
    renderer = ChatChunks(head, str, None, options)
    for i, ch in enumerate(text):
        for chunk in renderer.chunks(_update(0, ch, finished=i == len(text) - 1)):
            state.handle_chunk(ChatCompletionChunk.model_validate(chunk))
    merged = state.current_completion_snapshot.choices[0]
    assert whole["finish_reason"] == merged.finish_reason == "tool_calls"
    assert whole["message"]["reasoning_content"] == "why"
    assert (merged.message.model_extra or {}).get("reasoning_content") == "why"
    assert whole["message"]["content"] == merged.message.content == "Checking."
    calls = [(c.id, c.function.name, c.function.arguments) for c in merged.message.tool_calls]
    assert calls == [
        (c["id"], c["function"]["name"], c["function"]["arguments"])
        for c in whole["message"]["tool_calls"]
    ]
    assert [name for _, name, _ in calls] == ["get_weather", "get_time"]
    assert len({call_id for call_id, _, _ in calls}) == 2


def _chat_request(**kw: object) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": "hi"}], **kw}
    )


def test_tool_choice_decides_which_calls_are_parsed() -> None:
    tools = [
        {"type": "function", "function": {"name": "a"}},
        {"type": "function", "function": {"name": "b", "parameters": {"type": "object"}}},
    ]
    assert allowed_tool_names(_chat_request(tools=tools), "deepseek_v3") == {"a", "b"}
    assert allowed_tool_names(_chat_request(tools=tools, tool_choice="none"), None) is None
    assert allowed_tool_names(_chat_request(), None) is None
    named = _chat_request(tools=tools, tool_choice={"type": "function", "function": {"name": "b"}})
    assert allowed_tool_names(named, "deepseek_v3") == {"b"}
    shown = template_tools(named.tools, named.tool_choice)
    assert shown == [tools[1]]
    for bad, parser in [
        (_chat_request(tools=tools), None),
        (_chat_request(tool_choice="required"), "deepseek_v3"),
        (
            _chat_request(tools=tools, tool_choice={"type": "function", "function": {"name": "z"}}),
            "deepseek_v3",
        ),
    ]:
        with pytest.raises(APIError) as err:
            allowed_tool_names(bad, parser)
        assert err.value.status == 400
