"""From a validated request body to engine inputs: token ids, limits and SamplingParams.

Every check here is about the client's input and fails with a 400 naming the field, so
no client mistake reaches the engine as a crash. Used by ``server.openai_routes`` and
``server.v2_routes``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..engine.api import EngineError, QueueFullError, SamplingParams
from .errors import APIError
from .generation import Generation
from .state import LoadedModel
from .tokenizer import ServerTokenizer

PromptField = str | list[str] | list[int] | list[list[int]]


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


async def start_or_refuse(gen: Generation, retry_after: int) -> None:
    """Start a generation; when the engine refuses it, close it and raise the HTTP error.

    Starting before any response byte is sent is what lets a refusal still become a
    400 or a 429 (with Retry-After) on streamed requests too.
    """
    try:
        await gen.start()
    except EngineError as exc:
        await gen.close()
        raise engine_refusal(exc, retry_after) from None
    except BaseException:
        await gen.close()
        raise


def check_prompts(
    model: LoadedModel, prompts: Sequence[list[int]], param: str, token_ids_given: bool
) -> None:
    limit = model.engine.max_model_len
    vocab = model.tokenizer.vocab_size
    for ids in prompts:
        if not ids:
            raise APIError(400, f"{param}: the prompt is empty", param=param, code="invalid_value")
        if len(ids) >= limit:
            raise APIError(
                400,
                f"{param}: the prompt is {len(ids)} tokens but this model's maximum context "
                f"length is {limit} tokens (prompt and completion)",
                param=param,
                code="context_length_exceeded",
            )
        if token_ids_given and any(t >= vocab for t in ids):
            raise APIError(
                400,
                f"{param}: token ids must be below the vocabulary size {vocab}",
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


def sampling_params(body: Any, max_tokens: int, logprobs: int | None) -> SamplingParams:
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
