"""Text-in, text-out generation shared by the KServe v2 HTTP and gRPC faces.

Triton's LLM models (its vLLM and TensorRT-LLM backends) take ``text_input`` plus sampling
settings and return ``text_output``; this module parses those settings (top-level
fields, ``parameters`` and a ``sampling_parameters`` JSON object or string, in rising
precedence) and runs one generation through the same guards as the OpenAI routes.
Used by ``server.v2_routes`` and ``server.grpc_v2``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from ..engine.api import SamplingParams
from .content_filter import screen_prompts
from .driver import start_or_refuse
from .errors import APIError
from .generation import Generation
from .preparation import check_prompts, resolve_max_tokens
from .state import RequestContext, ServerState

_FLOATS = (
    "temperature",
    "top_p",
    "min_p",
    "repetition_penalty",
    "presence_penalty",
    "frequency_penalty",
)
_INTS = ("max_tokens", "top_k", "seed")


@dataclass(frozen=True, slots=True)
class V2Settings:
    params: SamplingParams
    exclude_input: bool
    stream: bool


def _merged(*sources: Mapping[str, Any] | str | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for source in sources:
        src = source
        if isinstance(src, str):
            try:
                src = json.loads(src)
            except json.JSONDecodeError:
                raise APIError(
                    400,
                    "sampling_parameters is not valid JSON",
                    param="sampling_parameters",
                    code="invalid_value",
                ) from None
            if not isinstance(src, dict):
                raise APIError(
                    400,
                    "sampling_parameters must be a JSON object",
                    param="sampling_parameters",
                    code="invalid_value",
                )
        if src:
            out.update(src)
    return out


def parse_settings(*sources: Mapping[str, Any] | str | None, default_stream: bool) -> V2Settings:
    raw = _merged(*sources)
    values: dict[str, Any] = {}
    try:
        for name in _INTS:
            if raw.get(name) is not None:
                v = raw[name]
                numeric = isinstance(v, int | str) and str(v).lstrip("-").isdigit()
                if isinstance(v, bool) or not numeric:
                    raise ValueError(f"{name} must be an integer")
                values[name] = int(v)
        for name in _FLOATS:
            if raw.get(name) is not None:
                if isinstance(raw[name], bool):
                    raise ValueError(f"{name} must be a number")
                values[name] = float(raw[name])
        stop = raw.get("stop")
        if stop is not None:
            stops = [stop] if isinstance(stop, str) else stop
            if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
                raise ValueError("stop must be a string or a list of strings")
            values["stop"] = tuple(stops)
        if raw.get("ignore_eos") is not None:
            values["ignore_eos"] = bool(raw["ignore_eos"])
        params = SamplingParams(**values)
    except (ValueError, TypeError, OverflowError) as exc:
        raise APIError(400, str(exc), param="parameters", code="invalid_value") from None
    exclude = raw.get("exclude_input_in_output")
    stream = raw.get("stream")
    return V2Settings(
        params,
        True if exclude is None else bool(exclude),
        default_stream if stream is None else bool(stream),
    )


async def generate_text(
    state: ServerState, ctx: RequestContext, text: str, settings: V2Settings, max_tokens_given: bool
) -> AsyncIterator[str]:
    """Yield text deltas (the prompt first unless excluded). 4xx raised before the first."""
    model = state.require_model()
    screen_prompts(state.content_filter, [text], subject="prompt", param="text_input")
    ids = model.tokenizer.encode(text)
    check_prompts([ids], "text_input", model.engine.max_model_len)
    max_tokens = resolve_max_tokens(
        settings.params.max_tokens if max_tokens_given else None,
        [ids],
        model.engine.max_model_len,
        16,
    )
    params = SamplingParams(**{**_as_dict(settings.params), "max_tokens": max_tokens})
    ctx.prompt_tokens = len(ids)
    state.admit(ctx, len(ids), max_tokens)
    gen = Generation(
        model.engine, state.metrics, state.content_filter, ctx.request_id, [ids], params, 1
    )
    await start_or_refuse(gen, state.config.retry_after_seconds)
    return _deltas(state, ctx, gen, "" if settings.exclude_input else text)


async def _deltas(
    state: ServerState, ctx: RequestContext, gen: Generation, prefix: str
) -> AsyncIterator[str]:
    status = 200
    try:
        if prefix:
            yield prefix
        async for upd in gen.events():
            if upd.finished:
                ctx.finish_reason = upd.finish_reason
            if upd.text:
                yield upd.text
    except BaseException:
        status = 499
        raise
    finally:
        await gen.close()
        ctx.completion_tokens = gen.completion_tokens
        state.finish(ctx, status)


def _as_dict(params: SamplingParams) -> dict[str, Any]:
    return {name: getattr(params, name) for name in SamplingParams.__dataclass_fields__}
