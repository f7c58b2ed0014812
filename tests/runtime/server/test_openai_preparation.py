"""Request preparation (``server.preparation``) as pure functions: no server, no engine.

A real ``tokenizers`` word-level tokenizer stands in for a checkpoint's, so token ids
are known exactly.
"""

from __future__ import annotations

from typing import Any

import pytest
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import WhitespaceSplit

from deepseek_runtime.backends.tokenizer import ServerTokenizer
from deepseek_runtime.server.content_filter import ContentFilter, ContentPolicy, screen_prompts
from deepseek_runtime.server.errors import APIError
from deepseek_runtime.server.preparation import (
    Limits,
    PromptBatch,
    check_prompts,
    plan_chat,
    plan_completion,
    read_chat_prompt,
    read_completion_prompts,
)
from deepseek_runtime.server.protocol import ChatCompletionRequest, CompletionRequest

pytestmark = pytest.mark.unit

WORDS = ["[UNK]", "<s>", "hello", "world", "bad", "a", "b", "c", "<user>", "<assistant>"]
LIMITS = Limits(max_model_len=8, vocab_size=len(WORDS), max_n=4)
POLICY = ContentFilter(ContentPolicy(blocklist=["bad"]))
TEMPLATE = "{% for m in messages %}<{{ m.role }}> {{ m.content }} {% endfor %}<assistant>"


@pytest.fixture(scope="module")
def tok() -> ServerTokenizer:
    model = WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]")
    raw = Tokenizer(model)
    raw.pre_tokenizer = WhitespaceSplit()
    return ServerTokenizer(raw, chat_template=TEMPLATE)


def completion(**fields: Any) -> CompletionRequest:
    return CompletionRequest.model_validate({"model": "m", **fields})


def chat(content: str = "hello", **fields: Any) -> ChatCompletionRequest:
    messages = [{"role": "user", "content": content}]
    return ChatCompletionRequest.model_validate({"model": "m", "messages": messages, **fields})


def refusal(call: Any, *args: Any) -> APIError:
    with pytest.raises(APIError) as err:
        call(*args)
    return err.value


def test_text_prompts_become_ids_and_audit_text(tok: ServerTokenizer) -> None:
    batch = read_completion_prompts(completion(prompt=["hello world", "a"]), tok, LIMITS, None)
    assert batch == PromptBatch([[2, 3], [5]], ["hello world", "a"])
    assert batch.audit_text == "hello world\na"


def test_token_id_prompts_have_no_audit_text(tok: ServerTokenizer) -> None:
    flat = read_completion_prompts(completion(prompt=[2, 3]), tok, LIMITS, None)
    nested = read_completion_prompts(completion(prompt=[[2], [3, 4]]), tok, LIMITS, None)
    assert flat.token_ids == [[2, 3]] and flat.audit_text is None
    assert nested.token_ids == [[2], [3, 4]] and nested.texts == []


@pytest.mark.parametrize(
    ("fields", "param", "code"),
    [
        ({"prompt": "hello", "suffix": "x"}, "suffix", "unsupported"),
        ({"prompt": [2, 99]}, "prompt", "invalid_value"),  # beyond the vocabulary
        ({"prompt": "a " * 8}, "prompt", "context_length_exceeded"),
        ({"prompt": "", "echo": True}, "prompt", "invalid_value"),  # no tokens at all
    ],
)
def test_completion_prompt_refusals_name_the_field(
    tok: ServerTokenizer, fields: dict[str, Any], param: str, code: str
) -> None:
    err = refusal(read_completion_prompts, completion(**fields), tok, LIMITS, None)
    assert (err.status, err.param, err.code) == (400, param, code)


def test_content_filter_sees_text_and_decoded_ids(tok: ServerTokenizer) -> None:
    err = refusal(read_completion_prompts, completion(prompt="a bad b"), tok, LIMITS, POLICY)
    assert (err.param, err.code) == ("prompt", "content_filter")
    assert err.message == "prompt refused by content policy (blocklist)"
    ids = refusal(read_completion_prompts, completion(prompt=[5, 4]), tok, LIMITS, POLICY)
    assert ids.code == "content_filter"
    assert read_completion_prompts(completion(prompt="a b"), tok, LIMITS, POLICY).token_ids == [
        [5, 6]
    ]


def test_screen_prompts_reads_nothing_without_a_policy() -> None:
    def never() -> Any:
        raise AssertionError("texts read without a policy")
        yield ""  # pragma: no cover

    screen_prompts(None, never(), subject="prompt", param="prompt")
    with pytest.raises(APIError, match=r"^text refused by content policy \(blocklist\)$"):
        screen_prompts(POLICY, iter(["ok", "bad"]), subject="text", param="text_input")


def test_completion_plan_budget_sampling_and_choices(tok: ServerTokenizer) -> None:
    body = completion(prompt=["hello", "a b"], n=2, seed=5, logprobs=1, stream=True)
    plan = plan_completion(body, read_completion_prompts(body, tok, LIMITS, None), tok, LIMITS)
    gen = plan.generation
    assert gen.prompts == [[2], [5, 6]] and gen.n == 2 and gen.choices == 4
    assert gen.prompt_tokens == 3
    # no max_tokens: OpenAI's 16, capped by the room left after the longest prompt
    assert gen.params.max_tokens == LIMITS.max_model_len - 2
    assert (gen.params.seed, gen.params.logprobs, gen.params.n) == (5, 1, 1)
    assert gen.stream and not gen.include_usage
    assert plan.prefixes == ["", "", "", ""]


def test_echo_prefixes_follow_choice_order(tok: ServerTokenizer) -> None:
    body = completion(prompt=["hello", "a b"], n=2, echo=True, max_tokens=3)
    plan = plan_completion(body, read_completion_prompts(body, tok, LIMITS, None), tok, LIMITS)
    assert plan.prefixes == ["hello", "hello", "a b", "a b"]
    ids = completion(prompt=[[2, 3]], echo=True)
    decoded = plan_completion(ids, read_completion_prompts(ids, tok, LIMITS, None), tok, LIMITS)
    assert decoded.prefixes == ["hello world"]


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": 8}, "max_tokens"),  # 1 prompt token + 8 > 8
        ({"n": 5}, "n"),
        ({"prompt": ["a"] * 5, "n": 4}, "prompt"),  # 20 choices > 4 * max_n
        # a huge n is refused before anything is sized by it (schemathesis found a 500)
        ({"prompt": ["a", "b"], "n": 2394219129}, "n"),
        ({"prompt": ["a", "b"], "n": 2394219129, "echo": True}, "n"),
    ],
)
def test_completion_plan_refusals(
    tok: ServerTokenizer, fields: dict[str, Any], param: str | None
) -> None:
    body = completion(**{"prompt": "a", **fields})
    batch = read_completion_prompts(body, tok, LIMITS, None)
    err = refusal(plan_completion, body, batch, tok, LIMITS)
    assert (err.status, err.param) == (400, param)


def test_sampling_values_the_engine_refuses_are_400(tok: ServerTokenizer) -> None:
    body = completion(prompt="a")
    body.temperature = -1.0  # assignment skips pydantic; SamplingParams still refuses it
    batch = read_completion_prompts(body, tok, LIMITS, None)
    err = refusal(plan_completion, body, batch, tok, LIMITS)
    assert (err.status, err.param, err.code) == (400, None, "invalid_value")
    assert "temperature" in err.message


def test_chat_prompt_is_rendered_then_checked(tok: ServerTokenizer) -> None:
    batch = read_chat_prompt(chat("hello world"), tok, LIMITS, None)
    assert batch.token_ids == [[8, 2, 3, 9]]
    assert batch.audit_text == "hello world"
    err = refusal(read_chat_prompt, chat("a b c a b c"), tok, LIMITS, None)
    assert (err.param, err.code) == ("messages", "context_length_exceeded")


def test_chat_filter_runs_before_the_template(tok: ServerTokenizer) -> None:
    long_and_bad = chat("bad " * 10)
    err = refusal(read_chat_prompt, long_and_bad, tok, LIMITS, POLICY)
    assert (err.param, err.code) == ("messages", "content_filter")
    assert err.message == "messages refused by content policy (blocklist)"
    no_template = ServerTokenizer(Tokenizer(WordLevel({"[UNK]": 0}, unk_token="[UNK]")))
    err = refusal(read_chat_prompt, chat(), no_template, LIMITS, None)
    assert (err.param, err.code) == ("messages", "invalid_value")


def test_chat_plan_budget_param_and_logprobs(tok: ServerTokenizer) -> None:
    body = chat(max_completion_tokens=2, max_tokens=3, logprobs=True, top_logprobs=2)
    plan = plan_chat(body, read_chat_prompt(body, tok, LIMITS, None), LIMITS)
    assert plan.params.max_tokens == 2 and plan.params.logprobs == 2
    body = chat(logprobs=True, stream=True, stream_options={"include_usage": True})
    plan = plan_chat(body, read_chat_prompt(body, tok, LIMITS, None), LIMITS)
    assert plan.params.max_tokens == LIMITS.max_model_len - 3  # all the room left
    assert plan.params.logprobs == 0 and plan.include_usage
    assert (
        plan_chat(chat(top_logprobs=3), PromptBatch([[2]], ["x"]), LIMITS).params.logprobs is None
    )
    too_many = chat(max_completion_tokens=6)
    err = refusal(plan_chat, too_many, read_chat_prompt(too_many, tok, LIMITS, None), LIMITS)
    assert err.param == "max_completion_tokens" and err.code == "context_length_exceeded"


def test_check_prompts_scans_ids_only_when_asked() -> None:
    check_prompts([[1, 50]], "text_input", 8)  # text prompts: ids are the tokenizer's own
    err = refusal(check_prompts, [[1, 50]], "text_input", 8, 10)
    assert err.message == "text_input: token ids must be below the vocabulary size 10"
