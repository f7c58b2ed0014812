"""The four OpenAI renderers as pure functions: updates in, exact JSON shapes out."""

from __future__ import annotations

import pytest

from deepseek_runtime.engine.api import TokenLogprob
from deepseek_runtime.server.chat_responses import ChatBody, ChatChunks
from deepseek_runtime.server.completion_responses import CompletionBody, CompletionChunks
from deepseek_runtime.server.generation import Update
from deepseek_runtime.server.responses import SSE_DONE, ChoiceBuffer, ResponseHead, sse

pytestmark = pytest.mark.unit

HEAD = ResponseHead("cmpl-1", 1700000000, "tiny")
TEXT = {1: "he", 2: "llo", 3: " w", 4: "é"}
HEAD_FIELDS = {"id": "cmpl-1", "created": 1700000000, "model": "tiny"}


def token_text(token_id: int) -> str:
    return TEXT[token_id]


def lp(token_id: int, logprob: float, *top: tuple[int, float]) -> TokenLogprob:
    return TokenLogprob(token_id, logprob, tuple(top))


def update(
    index: int, text: str, logprobs: list[TokenLogprob] | None = None, reason: str | None = None
) -> Update:
    return Update(index, text, [], logprobs or [], reason is not None, reason, 0)


def buffered(*updates: Update) -> list[ChoiceBuffer]:
    bufs = [ChoiceBuffer() for _ in {u.index for u in updates}]
    for u in updates:
        bufs[u.index].add(u)
    return bufs


def test_sse_framing_is_compact_utf8() -> None:
    assert sse({"a": "é", "b": [1, 2]}) == 'data: {"a":"é","b":[1,2]}\n\n'.encode()
    assert SSE_DONE == b"data: [DONE]\n\n"


def test_completion_body_with_echo_and_offsets() -> None:
    bufs = buffered(
        update(0, "he", [lp(1, -0.5, (1, -0.5), (2, -1.0))]),
        update(1, "llo", [lp(2, -0.25)]),
        update(0, "llo", [lp(2, -0.1)], "length"),
        update(1, "", [], "stop"),
    )
    body = CompletionBody(HEAD, token_text, ["ab", ""], logprobs=True).body(bufs, 3, 4)
    assert body == {
        **HEAD_FIELDS,
        "object": "text_completion",
        "choices": [
            {
                "index": 0,
                "text": "abhello",
                "logprobs": {
                    "tokens": ["he", "llo"],
                    "token_logprobs": [-0.5, -0.1],
                    "top_logprobs": [{"he": -0.5, "llo": -1.0}, {}],
                    "text_offset": [2, 4],
                },
                "finish_reason": "length",
            },
            {
                "index": 1,
                "text": "llo",
                "logprobs": {
                    "tokens": ["llo"],
                    "token_logprobs": [-0.25],
                    "top_logprobs": [{}],
                    "text_offset": [0],
                },
                "finish_reason": "stop",
            },
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
    }
    plain = CompletionBody(HEAD, token_text, ["", ""], logprobs=False).body(bufs, 3, 4)
    assert [c["logprobs"] for c in plain["choices"]] == [None, None]


def test_completion_chunks_echo_once_skip_empty_and_carry_offsets() -> None:
    render = CompletionChunks(HEAD, token_text, ["ab"], logprobs=True)
    first = render.chunks(update(0, "he", [lp(1, -0.5)]))
    assert first == [
        {
            **HEAD_FIELDS,
            "object": "text_completion",
            "choices": [
                {
                    "index": 0,
                    "text": "abhe",
                    "logprobs": {
                        "tokens": ["he"],
                        "token_logprobs": [-0.5],
                        "top_logprobs": [{}],
                        "text_offset": [2],
                    },
                    "finish_reason": None,
                }
            ],
            "usage": None,
        }
    ]
    assert render.chunks(update(0, "")) == []  # nothing to say: no chunk
    (last,) = render.chunks(update(0, "llo", [lp(2, -0.1)], "length"))
    choice = last["choices"][0]
    assert choice["text"] == "llo" and choice["finish_reason"] == "length"
    assert choice["logprobs"]["text_offset"] == [4]  # after "ab" + "he"


def test_completion_chunks_without_logprobs_or_echo() -> None:
    render = CompletionChunks(HEAD, token_text, ["", ""], logprobs=False)
    (a,) = render.chunks(update(1, " w"))
    assert a["choices"] == [{"index": 1, "text": " w", "logprobs": None, "finish_reason": None}]
    (end,) = render.chunks(update(0, "", reason="stop"))  # a finish is always sent
    assert end["choices"][0] == {"index": 0, "text": "", "logprobs": None, "finish_reason": "stop"}


def test_usage_chunks_have_no_choices_and_their_own_time() -> None:
    completion = CompletionChunks(HEAD, token_text, [""], logprobs=False)
    chat = ChatChunks(HEAD, token_text, None)
    expected_usage = {"prompt_tokens": 2, "completion_tokens": 5, "total_tokens": 7}
    for render, obj in ((completion, "text_completion"), (chat, "chat.completion.chunk")):
        assert render.usage_chunk(1700000009, 2, 5) == {
            "id": "cmpl-1",
            "object": obj,
            "created": 1700000009,
            "model": "tiny",
            "choices": [],
            "usage": expected_usage,
        }


def test_chat_body_with_and_without_logprobs() -> None:
    bufs = buffered(update(0, "é", [lp(4, -0.5, (4, -0.5), (1, -2.0))], "stop"))
    body = ChatBody(HEAD, token_text, top_logprobs=1).body(bufs, 1, 1)
    assert body == {
        **HEAD_FIELDS,
        "object": "chat.completion",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "é"},
                "logprobs": {
                    "content": [
                        {
                            "token": "é",
                            "logprob": -0.5,
                            "bytes": [195, 169],
                            "top_logprobs": [{"token": "é", "logprob": -0.5, "bytes": [195, 169]}],
                        }
                    ]
                },
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }
    assert ChatBody(HEAD, token_text, None).body(bufs, 1, 1)["choices"][0]["logprobs"] is None


def test_chat_chunks_open_each_choice_with_the_role() -> None:
    render = ChatChunks(HEAD, token_text, top_logprobs=0)
    role, first = render.chunks(update(1, "he", [lp(1, -0.5, (2, -1.0))]))
    assert role == {
        **HEAD_FIELDS,
        "object": "chat.completion.chunk",
        "choices": [
            {
                "index": 1,
                "delta": {"role": "assistant", "content": ""},
                "logprobs": None,
                "finish_reason": None,
            }
        ],
        "usage": None,
    }
    assert first["choices"][0]["delta"] == {"content": "he"}
    assert first["choices"][0]["logprobs"] == {
        "content": [{"token": "he", "logprob": -0.5, "bytes": [104, 101], "top_logprobs": []}]
    }
    assert render.chunks(update(1, "")) == []  # started, and nothing new
    (end,) = render.chunks(update(1, "", reason="length"))
    assert end["choices"][0]["delta"] == {} and end["choices"][0]["finish_reason"] == "length"
    other = render.chunks(update(0, "", reason="stop"))
    assert [c["choices"][0]["delta"] for c in other] == [{"role": "assistant", "content": ""}, {}]
