"""From a validated request body to a :class:`GenerationPlan`: token ids, limits, sampling.

Pure (the tokenizer and the content filter compute, nothing here reads a clock or does
I/O), so every function is unit-tested without a server. Each check is about the
client's input and fails with a 400 naming the field, so no client mistake reaches the
engine as a crash. A request is prepared in two steps because the audit log records the
prompt text once the prompt has passed its checks, also when a later check refuses::

    read_completion_prompts / read_chat_prompt  ->  PromptBatch  (route: audit text)
    plan_completion / plan_chat                 ->  CompletionPlan / GenerationPlan

Used by ``server.openai_routes``; the shared checks also by ``server.v2_common``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ..backends.tokenizer import ChatTemplateError, ServerTokenizer
from ..engine.api import EngineError, QueueFullError, SamplingParams
from .chat_tools import template_messages, template_tools
from .content_filter import ContentFilter, screen_prompts
from .errors import APIError
from .protocol import ChatCompletionRequest, ChatMessage, CompletionRequest, SamplingFields
from .structured_outputs import guided_decoding
from .tool_grammar import tool_choice_constraint

PromptField = str | list[str] | list[int] | list[list[int]]
COMPLETION_DEFAULT_MAX_TOKENS = 16  # OpenAI's default for /v1/completions


@dataclass(frozen=True, slots=True)
class Limits:
    """What the served model and the server's options allow."""

    max_model_len: int  # prompt + completion tokens
    vocab_size: int
    max_n: int  # ``--max-n``


@dataclass(frozen=True, slots=True)
class PromptBatch:
    """The checked prompts of one request, and the texts they came from."""

    token_ids: list[list[int]]
    texts: list[str]  # as the client sent them; empty when it sent token ids

    @property
    def audit_text(self) -> str | None:
        """What the audit log may record (only with ``--log-prompts``, redacted)."""
        return "\n".join(self.texts) if self.texts else None


@dataclass(frozen=True, slots=True)
class GenerationPlan:
    """Everything the engine needs for one request; choice ``p * n + j`` samples prompt p."""

    prompts: list[list[int]]
    params: SamplingParams  # ``params.logprobs``: None, or how many alternatives per token
    n: int
    stream: bool
    include_usage: bool  # a last stream chunk carries usage

    @property
    def choices(self) -> int:
        return len(self.prompts) * self.n

    @property
    def prompt_tokens(self) -> int:
        return sum(len(p) for p in self.prompts)


@dataclass(frozen=True, slots=True)
class EchoScoring:
    """``echo`` with ``logprobs`` (prompt logprobs) and/or ``max_tokens: 0`` (score only:
    the engine generates one token that the answer drops)."""

    prompt_ids: list[list[int]]  # per choice
    logprobs: bool
    score_only: bool


@dataclass(frozen=True, slots=True)
class CompletionPlan:
    generation: GenerationPlan
    prefixes: list[str]  # per choice: the prompt text with ``echo``, else ""
    echo: EchoScoring | None = None


def split_prompt(raw: PromptField, tok: ServerTokenizer) -> tuple[list[str], list[list[int]], bool]:
    """``prompt`` as (texts, token-id prompts, whether ids were given)."""
    if isinstance(raw, str):
        return [raw], [tok.encode(raw)], False
    texts = [p for p in raw if isinstance(p, str)]
    if len(texts) == len(raw):
        return texts, [tok.encode(t) for t in texts], False
    flat = [p for p in raw if isinstance(p, int)]
    if len(flat) == len(raw):
        return [], [flat], True
    return [], [[int(t) for t in p] for p in raw if isinstance(p, list)], True


def engine_refusal(exc: EngineError, retry_after: int) -> APIError:
    """QueueFullError → 429 with Retry-After; any other refusal → 400."""
    if isinstance(exc, QueueFullError):
        return APIError(
            429,
            str(exc) or "server is busy",
            code="queue_full",
            headers={"Retry-After": str(retry_after)},
        )
    return APIError(400, str(exc) or "request refused by the engine", code="invalid_request")


def check_prompts(
    prompts: Sequence[list[int]], param: str, max_model_len: int, vocab_size: int | None = None
) -> None:
    """400 naming ``param`` for an empty prompt or one that leaves no room to generate.

    ``vocab_size`` is given for prompts the client sent as token ids. The engine checks
    ids too, but this server decodes such prompts (``echo``, the content filter) before
    the engine sees them, and an id beyond the tokenizer's range would fail there as a 500.
    """
    for ids in prompts:
        if not ids:
            raise APIError(400, f"{param}: the prompt is empty", param=param, code="invalid_value")
        if len(ids) >= max_model_len:
            raise APIError(
                400,
                f"{param}: the prompt is {len(ids)} tokens but this model's maximum context "
                f"length is {max_model_len} tokens (prompt and completion)",
                param=param,
                code="context_length_exceeded",
            )
        if vocab_size is not None and any(t >= vocab_size for t in ids):
            raise APIError(
                400,
                f"{param}: token ids must be below the vocabulary size {vocab_size}",
                param=param,
                code="invalid_value",
            )


def resolve_max_tokens(
    requested: int | None,
    prompts: Sequence[list[int]],
    limit: int,
    default: int | None,
    param: str = "max_tokens",
) -> int:
    """The completion budget: ``requested``, else ``default`` capped by the room left."""
    longest = max(len(p) for p in prompts)
    room = limit - longest
    if requested is None:
        return max(1, min(room, default) if default is not None else room)
    if requested < 1:
        raise APIError(400, f"{param} must be at least 1", param=param, code="invalid_value")
    if requested > room:
        raise APIError(
            400,
            f"{param}: {longest} prompt tokens + {requested} completion tokens exceed this "
            f"model's maximum context length of {limit} tokens",
            param=param,
            code="context_length_exceeded",
        )
    return requested


def sampling_params(body: SamplingFields, max_tokens: int, logprobs: int | None) -> SamplingParams:
    """Build SamplingParams from a completions / chat body; ValueError → 400."""
    try:
        return SamplingParams(
            max_tokens=max_tokens,
            temperature=body.temperature,
            top_p=body.top_p,
            top_k=body.top_k,
            min_p=body.min_p,
            repetition_penalty=body.repetition_penalty,
            presence_penalty=body.presence_penalty,
            frequency_penalty=body.frequency_penalty,
            seed=body.seed,
            stop=body.stop_list(),
            stop_token_ids=tuple(body.stop_token_ids or ()),
            ignore_eos=body.ignore_eos,
            logprobs=logprobs,
            n=1,
            guided=guided_decoding(body),
        )
    except ValueError as exc:
        raise APIError(400, str(exc), code="invalid_value") from None


def check_n(n: int, max_n: int, prompts: int = 1) -> None:
    if n > max_n:
        raise APIError(400, f"n must be at most {max_n}", param="n", code="invalid_value")
    if n * prompts > max_n * 4:
        raise APIError(
            400,
            f"too many choices: {prompts} prompts x n={n}",
            param="prompt",
            code="invalid_value",
        )


def _plan(
    body: SamplingFields,
    prompts: list[list[int]],
    max_tokens: int,
    logprobs: int | None,
    max_n: int,
) -> GenerationPlan:
    check_n(body.n, max_n, len(prompts))
    params = sampling_params(body, max_tokens, logprobs)
    return GenerationPlan(prompts, params, body.n, body.stream, body.wants_usage_chunk())


def read_completion_prompts(
    body: CompletionRequest,
    tok: ServerTokenizer,
    limits: Limits,
    content_filter: ContentFilter | None,
) -> PromptBatch:
    """Tokenise ``prompt``, check it and pass it through the content filter."""
    texts, prompts, ids_given = split_prompt(body.prompt, tok)
    if body.suffix:
        raise APIError(400, "suffix is not supported", param="suffix", code="unsupported")
    check_prompts(prompts, "prompt", limits.max_model_len, limits.vocab_size if ids_given else None)
    screened: Iterable[str] = texts or (tok.decode(p) for p in prompts)
    screen_prompts(content_filter, screened, subject="prompt", param="prompt")
    return PromptBatch(prompts, texts)


def plan_completion(
    body: CompletionRequest, batch: PromptBatch, tok: ServerTokenizer, limits: Limits
) -> CompletionPlan:
    """Budget, echo prefixes and sampling for checked completion prompts."""
    prompts = batch.token_ids
    score_only = body.echo and body.max_tokens == 0
    max_tokens = resolve_max_tokens(
        1 if score_only else body.max_tokens,
        prompts,
        limits.max_model_len,
        COMPLETION_DEFAULT_MAX_TOKENS,
    )
    n = body.n
    check_n(n, limits.max_n, len(prompts))  # before anything is sized by n
    if body.echo:
        prefixes = [
            batch.texts[i // n] if batch.texts else tok.decode(prompts[i // n])
            for i in range(len(prompts) * n)
        ]
    else:
        prefixes = [""] * (len(prompts) * n)
    plan = _plan(body, prompts, max_tokens, body.logprobs, limits.max_n)
    if not body.echo:
        return CompletionPlan(plan, prefixes)
    wants = body.logprobs is not None
    if wants:
        params = dataclasses.replace(plan.params, prompt_logprobs=body.logprobs)
        plan = dataclasses.replace(plan, params=params)
    ids = [prompts[i // n] for i in range(len(prompts) * n)]
    return CompletionPlan(plan, prefixes, EchoScoring(ids, wants, score_only))


def render_chat(
    tok: ServerTokenizer,
    messages: list[ChatMessage],
    add_generation_prompt: bool,
    tools: list[dict[str, Any]] | None,
) -> str:
    """The conversation through the checkpoint's template; a template refusal is a 400."""
    extra = {"tools": tools} if tools else None
    try:
        return tok.apply_chat_template(
            template_messages(messages), add_generation_prompt=add_generation_prompt, extra=extra
        )
    except ChatTemplateError as exc:
        raise APIError(400, str(exc), param="messages", code="invalid_value") from None


def read_chat_prompt(
    body: ChatCompletionRequest,
    tok: ServerTokenizer,
    limits: Limits,
    content_filter: ContentFilter | None,
) -> PromptBatch:
    """Filter the messages, render them (and the tools) with the template, tokenise, check."""
    contents = [m.text() for m in body.messages]
    screen_prompts(content_filter, contents, subject="messages", param="messages")
    tools = template_tools(body.tools, body.tool_choice)
    text = render_chat(tok, body.messages, body.add_generation_prompt, tools)
    ids = tok.encode(text, add_special_tokens=False)
    check_prompts([ids], "messages", limits.max_model_len)
    return PromptBatch([ids], contents)


def plan_chat(
    body: ChatCompletionRequest,
    batch: PromptBatch,
    limits: Limits,
    *,
    reasoning: bool = False,
    token_markers: frozenset[str] = frozenset(),
) -> GenerationPlan:
    """Budget (``max_completion_tokens`` wins over ``max_tokens``), logprobs and sampling.

    A forced ``tool_choice`` (``required`` / a named function) becomes the request's
    grammar (``server.tool_grammar``); ``reasoning``: the answer thinks first (R1);
    ``token_markers``: the tool-call markers that are single tokens of the vocabulary.
    """
    param = "max_completion_tokens" if body.max_completion_tokens is not None else "max_tokens"
    max_tokens = resolve_max_tokens(
        body.requested_max_tokens(), batch.token_ids, limits.max_model_len, None, param
    )
    top = (body.top_logprobs or 0) if body.logprobs else None
    forced = tool_choice_constraint(body, reasoning=reasoning, token_markers=token_markers)
    plan = _plan(body, batch.token_ids, max_tokens, top, limits.max_n)
    if forced is None:
        return plan
    return dataclasses.replace(plan, params=dataclasses.replace(plan.params, guided=forced))
