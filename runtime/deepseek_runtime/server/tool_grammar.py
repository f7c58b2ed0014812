"""``tool_choice: required`` and a named function, enforced as a grammar over the output.

``auto`` leaves the model free (it may answer in prose or call a tool; the parser in
``server.tool_calls`` reads whatever it wrote). ``required`` and a named function are
promises to the caller, so they become a structured-output constraint that the engine
applies as a token mask (the same xgrammar path as ``response_format``): the answer
*is* a DeepSeek-V3 tool-call block, each call to an allowed tool, its arguments valid
against that tool's ``parameters`` schema::

    [<reasoning> </think>]            only with --reasoning-parser (R1 thinks first)
    <｜tool▁calls▁begin｜>
      <｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME\\n```json\\n{ARGS}\\n```<｜tool▁call▁end｜>
      [\\n another call ...]          unless parallel_tool_calls is false
    <｜tool▁calls▁end｜>

That is DeepSeek-V3's own format (its chat template writes earlier calls this way), so
the parser reads the constrained answer like any other. The grammar is described as an
xgrammar *structural tag* (tags with fixed begin/end strings around JSON-schema
content) and sent to the engine as JSON; the engine compiles and caches it by that text.
Free whitespace inside the arguments is capped at one character, so even a weak model
reaches the end of the object instead of padding it. Pure: used by
``server.preparation`` when it plans a chat request.
"""

from __future__ import annotations

import json
from typing import Any

from ..engine.api import GuidedDecoding
from .errors import APIError
from .protocol import ChatCompletionRequest, NamedToolChoice, Tool
from .reasoning import THINK_END
from .tool_calls import CALL_BEGIN, CALL_END, CALLS_BEGIN, CALLS_END, SEP

CALL_SEPARATOR = "\n"  # between calls, as DeepSeek-V3's template writes them
_ARGS_OPEN = "\n```json\n"
_ARGS_CLOSE = "\n```"
MARKERS = (CALLS_BEGIN, CALLS_END, CALL_BEGIN, CALL_END, SEP)
"""Required as single tokens where the vocabulary has them so. ``</think>`` stays text:
xgrammar's free-text region does not end on a token-form end marker (it swallows it)."""


def _parameters_schema(tool: Tool) -> dict[str, Any]:
    """The tool's ``parameters`` (any JSON object when it gives none, as OpenAI allows)."""
    return tool.function.parameters if tool.function.parameters is not None else {"type": "object"}


Marker = str | dict[str, Any]


def _marker(text: str, token_markers: frozenset[str]) -> Marker:
    """A marker as one token where the vocabulary has it as one, else as a string.

    As a string the grammar would also let the model spell it out byte by byte (a weak
    model does), which parses the same but costs dozens of tokens; as a token it is one.
    """
    return {"type": "token", "token": text} if text in token_markers else text


def _piece(text: str, token_markers: frozenset[str]) -> dict[str, Any]:
    """A sequence element: the marker token, or the literal text."""
    marker = _marker(text, token_markers)
    return marker if isinstance(marker, dict) else {"type": "const_string", "value": marker}


def _call_tag(tool: Tool, token_markers: frozenset[str]) -> dict[str, Any]:
    body = [
        {"type": "const_string", "value": "function"},
        _piece(SEP, token_markers),
        {"type": "const_string", "value": tool.function.name + _ARGS_OPEN},
        {
            "type": "json_schema",
            "json_schema": _parameters_schema(tool),
            "max_whitespace_cnt": 1,
        },
        {"type": "const_string", "value": _ARGS_CLOSE},
    ]
    return {
        "type": "tag",
        "begin": _marker(CALL_BEGIN, token_markers),
        "content": {"type": "sequence", "elements": body},
        "end": _marker(CALL_END, token_markers),
    }


def forced_tools(body: ChatCompletionRequest) -> list[Tool] | None:
    """The tools the answer must call one of, or None when the choice does not force one."""
    choice = body.tool_choice
    if not body.tools:
        return None
    if isinstance(choice, NamedToolChoice):
        return [t for t in body.tools if t.function.name == choice.function.name]
    if choice == "required":
        return list(body.tools)
    return None


def tool_call_structural_tag(
    tools: list[Tool],
    *,
    parallel: bool,
    reasoning_first: bool,
    token_markers: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """The structural tag (xgrammar's JSON form) of a forced DeepSeek-V3 tool-call answer.

    ``token_markers``: the markers (``MARKERS``) that are single tokens of the served
    vocabulary, required as those tokens.
    """
    calls = {
        "type": "tags_with_separator",
        "tags": [_call_tag(t, token_markers) for t in tools],
        "separator": CALL_SEPARATOR,
        "at_least_one": True,
        "stop_after_first": not parallel,
    }
    block: dict[str, Any] = {
        "type": "tag",
        "begin": _marker(CALLS_BEGIN, token_markers),
        "content": calls,
        "end": _marker(CALLS_END, token_markers),
    }
    if reasoning_first:
        thinking = {
            "type": "tag",
            "begin": "",
            "content": {"type": "any_text"},
            "end": THINK_END,
        }
        block = {"type": "sequence", "elements": [thinking, block]}
    return {"type": "structural_tag", "format": block}


def tool_choice_constraint(
    body: ChatCompletionRequest,
    *,
    reasoning: bool,
    token_markers: frozenset[str] = frozenset(),
) -> GuidedDecoding | None:
    """The grammar that enforces ``required`` / a named function; None for ``auto``/``none``.

    A request that also asks for another structured output is a 400: the answer cannot
    be both a tool call and a schema-valid document.
    """
    tools = forced_tools(body)
    if tools is None:
        return None
    if body.response_format is not None and body.response_format.type != "text":
        raise APIError(
            400,
            "tool_choice required or a named function cannot be combined with response_format",
            param="tool_choice",
            code="invalid_value",
        )
    if body.guided_json is not None or body.guided_regex is not None or body.guided_choice:
        raise APIError(
            400,
            "tool_choice required or a named function cannot be combined with guided decoding",
            param="tool_choice",
            code="invalid_value",
        )
    tag = tool_call_structural_tag(
        tools,
        parallel=body.parallel_tool_calls,
        reasoning_first=reasoning,
        token_markers=token_markers,
    )
    return GuidedDecoding("structural_tag", json.dumps(tag, sort_keys=True))
