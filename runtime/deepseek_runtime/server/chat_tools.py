"""What a chat request's ``tools`` and ``tool_choice`` mean for its prompt and its answer.

The checkpoint's chat template sees the offered tools (as ``tools``, the name Hugging
Face templates use) and the earlier turns' ``tool_calls`` / ``tool_call_id``; the answer
is then parsed for calls to the tools the choice allows::

    tool_choice   template sees      calls parsed from the answer
    none          every tool         none (plain content)
    auto          every tool         to any offered tool
    required      every tool         to any offered tool
    {function}    only that tool     to that tool only

``auto`` leaves the model free: an answer without a valid call is returned as content.
``required`` and a named function are enforced: ``server.tool_grammar`` turns them into
a grammar over the output, so the answer is a call (with schema-valid arguments) to an
allowed tool. Pure: used by ``server.preparation`` and ``server.tokenize_routes``.
"""

from __future__ import annotations

from typing import Any

from .errors import APIError
from .protocol import ChatCompletionRequest, ChatMessage, NamedToolChoice, Tool


def template_messages(messages: list[ChatMessage]) -> list[dict[str, Any]]:
    """The messages as chat templates expect them (Hugging Face's dict shapes)."""
    out: list[dict[str, Any]] = []
    for m in messages:
        item: dict[str, Any] = {"role": m.role, "content": m.text()}
        if m.name:
            item["name"] = m.name
        if m.tool_calls:
            item["tool_calls"] = [c.model_dump() for c in m.tool_calls]
        if m.tool_call_id is not None:
            item["tool_call_id"] = m.tool_call_id
        out.append(item)
    return out


def template_tools(tools: list[Tool] | None, choice: object = None) -> list[dict[str, Any]] | None:
    """The tool definitions the template renders (only the named one for a named choice)."""
    if not tools:
        return None
    if isinstance(choice, NamedToolChoice):
        tools = [t for t in tools if t.function.name == choice.function.name]
    return [t.model_dump(exclude_none=True) for t in tools]


def allowed_tool_names(body: ChatCompletionRequest, parser: str | None) -> frozenset[str] | None:
    """Names whose calls the answer may carry; ``None``: do not parse calls. 400 on misuse."""
    choice = body.tool_choice
    if not body.tools:
        if choice is not None and choice != "none":
            raise APIError(
                400, "tool_choice needs tools", param="tool_choice", code="invalid_value"
            )
        return None
    if choice == "none":
        return None
    if parser is None:
        raise APIError(
            400,
            "tool calling is off on this server (start it with --tool-call-parser deepseek_v3)",
            param="tools",
            code="unsupported",
        )
    names = frozenset(t.function.name for t in body.tools)
    if isinstance(choice, NamedToolChoice):
        if choice.function.name not in names:
            raise APIError(
                400,
                f"tool_choice names {choice.function.name!r}, which is not in tools",
                param="tool_choice",
                code="invalid_value",
            )
        return frozenset({choice.function.name})
    return names
