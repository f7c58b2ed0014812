"""``/v1/models``, ``/v1/completions`` and ``/v1/chat/completions`` (SSE when ``stream``).

Each request: guards (``ServerState.begin``) → tokenise and check limits
(``server.preparation``) → content filter on the prompt → rate limit → start the
``Generation`` (admission errors become 4xx here, before any byte is sent) → answer or
stream. A client that goes away cancels the stream, and ``Generation.close`` aborts its
sequences. Mounted by ``server.app``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from .errors import APIError
from .generation import Generation, Update
from .preparation import (
    check_n,
    check_prompts,
    resolve_max_tokens,
    sampling_params,
    split_prompt,
    start_or_refuse,
)
from .protocol import ChatCompletionRequest, CompletionRequest, SamplingFields
from .responses import (
    SSE_DONE,
    ChoiceBuffer,
    chat_body,
    chat_chunk,
    chat_logprobs,
    completion_body,
    completion_chunk,
    completion_logprobs,
    sse,
    usage_chunk,
)
from .state import LoadedModel, RequestContext, ServerState
from .tokenizer import ChatTemplateError

Render = Callable[[Update], list[bytes]]
Summary = Callable[[list[ChoiceBuffer], Generation], dict[str, Any]]


class ClientGone(Exception):  # noqa: N818 (reads as a state)
    """The client closed the connection before a non-streamed answer was ready."""


async def _collect(gen: Generation, choices: int) -> list[ChoiceBuffer]:
    bufs = [ChoiceBuffer() for _ in range(choices)]
    async for upd in gen.events():
        buf = bufs[upd.index]
        buf.text.append(upd.text)
        buf.logprobs.extend(upd.logprobs)
        if upd.finished:
            buf.finish_reason = upd.finish_reason
    return bufs


async def _collect_watching(request: Request, gen: Generation, choices: int) -> list[ChoiceBuffer]:
    task = asyncio.ensure_future(_collect(gen, choices))
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=0.5)
            if done:
                return task.result()
            if await request.is_disconnected():
                raise ClientGone
    finally:
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def build_openai_router(state: ServerState) -> APIRouter:
    router = APIRouter(tags=["openai"])

    @router.get("/v1/models")
    async def list_models(request: Request) -> dict[str, Any]:
        state.authenticate(request)
        limit = state.model.engine.max_model_len if state.model else None
        return {
            "object": "list",
            "data": [
                {
                    "id": state.model_name,
                    "object": "model",
                    "created": 0,
                    "owned_by": "deepseek-runtime",
                    "root": state.model_name,
                    "max_model_len": limit,
                }
            ],
        }

    async def run(  # noqa: PLR0917
        request: Request,
        ctx: RequestContext,
        model: LoadedModel,
        body: SamplingFields,
        prompts: list[list[int]],
        max_tokens: int,
        logprobs: int | None,
        render: Render,
        summary: Summary,
        obj: str,
    ) -> Response:
        check_n(body.n, state.config.max_n, len(prompts))
        params = sampling_params(body, max_tokens, logprobs)
        ctx.prompt_tokens = sum(len(p) for p in prompts)
        state.admit(ctx, ctx.prompt_tokens)
        gen = Generation(
            model.engine,
            state.metrics,
            state.content_filter,
            ctx.request_id,
            prompts,
            params,
            body.n,
        )
        await start_or_refuse(gen, state.config.retry_after_seconds)
        if not body.stream:
            status = 499  # unless the answer is ready
            try:
                bufs = await _collect_watching(request, gen, len(prompts) * body.n)
                reasons = {b.finish_reason for b in bufs}
                ctx.finish_reason = reasons.pop() if len(reasons) == 1 else "mixed"
                status = 200
            except ClientGone:
                return Response(status_code=499)
            finally:
                await gen.close()
                ctx.completion_tokens = gen.completion_tokens
                state.finish(ctx, status)
            return JSONResponse(summary(bufs, gen))

        async def stream() -> AsyncIterator[bytes]:
            status = 200
            try:
                async for upd in gen.events():
                    for chunk in render(upd):
                        yield chunk
                    if upd.finished:
                        ctx.finish_reason = upd.finish_reason
                if body.wants_usage_chunk():
                    yield sse(
                        usage_chunk(
                            ctx.request_id,
                            int(time.time()),
                            state.model_name,
                            obj,
                            gen.prompt_tokens,
                            gen.completion_tokens,
                        )
                    )
                yield SSE_DONE
            except BaseException:
                status = 499
                raise
            finally:
                await gen.close()
                ctx.completion_tokens = gen.completion_tokens
                state.finish(ctx, status)

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def guarded(request: Request, ctx: RequestContext, work: Any) -> Response:
        try:
            response: Response = await work
            return response
        except APIError as exc:
            state.finish(ctx, exc.status)
            raise

    @router.post("/v1/completions", response_model=None)
    async def completions(body: CompletionRequest, request: Request) -> Response:
        model, ctx = state.begin(request, "/v1/completions")

        async def work() -> Response:
            state.check_model_name(body.model)
            tok = model.tokenizer
            texts, prompts, ids_given = split_prompt(body.prompt, tok)
            if body.suffix:
                raise APIError(400, "suffix is not supported", param="suffix", code="unsupported")
            check_prompts(model, prompts, "prompt", ids_given)
            if state.content_filter is not None:
                for text in texts or [tok.decode(p) for p in prompts]:
                    if v := state.content_filter.check_prompt(text):
                        raise APIError(
                            400,
                            f"prompt refused by content policy ({v.rule})",
                            param="prompt",
                            code="content_filter",
                        )
            ctx.prompt_text = "\n".join(texts) if texts else None
            limit = model.engine.max_model_len
            max_tokens = resolve_max_tokens(body.max_tokens, prompts, limit, 16)
            n = body.n
            if body.echo:
                prefix = [
                    texts[i // n] if texts else tok.decode(prompts[i // n])
                    for i in range(len(prompts) * n)
                ]
            else:
                prefix = [""] * (len(prompts) * n)
            offsets = [len(p) for p in prefix]
            want_lp = body.logprobs is not None
            created = int(time.time())
            echoed: set[int] = set()

            def render(upd: Update) -> list[bytes]:
                lp = None
                if want_lp:
                    lp = completion_logprobs(upd.logprobs, tok.token_text, offsets[upd.index])
                offsets[upd.index] += len(upd.text)
                text = upd.text
                if body.echo and upd.index not in echoed:
                    echoed.add(upd.index)
                    text = prefix[upd.index] + text
                if not text and not upd.finished and not upd.logprobs:
                    return []
                return [
                    sse(
                        completion_chunk(
                            ctx.request_id,
                            created,
                            state.model_name,
                            upd.index,
                            text,
                            lp,
                            upd.finish_reason,
                        )
                    )
                ]

            def summary(bufs: list[ChoiceBuffer], gen: Generation) -> dict[str, Any]:
                return completion_body(
                    ctx.request_id,
                    created,
                    state.model_name,
                    bufs,
                    tok.token_text,
                    want_lp,
                    prefix,
                    gen.prompt_tokens,
                    gen.completion_tokens,
                )

            return await run(
                request,
                ctx,
                model,
                body,
                prompts,
                max_tokens,
                body.logprobs,
                render,
                summary,
                "text_completion",
            )

        return await guarded(request, ctx, work())

    @router.post("/v1/chat/completions", response_model=None)
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
        model, ctx = state.begin(request, "/v1/chat/completions")

        async def work() -> Response:
            state.check_model_name(body.model)
            tok = model.tokenizer
            messages = [
                {"role": m.role, "content": m.text(), **({"name": m.name} if m.name else {})}
                for m in body.messages
            ]
            if state.content_filter is not None:
                for m in messages:
                    if v := state.content_filter.check_prompt(str(m["content"])):
                        raise APIError(
                            400,
                            f"messages refused by content policy ({v.rule})",
                            param="messages",
                            code="content_filter",
                        )
            try:
                text = tok.apply_chat_template(
                    messages, add_generation_prompt=body.add_generation_prompt
                )
            except ChatTemplateError as exc:
                raise APIError(400, str(exc), param="messages", code="invalid_value") from None
            ids = tok.encode(text, add_special_tokens=False)
            check_prompts(model, [ids], "messages", False)
            ctx.prompt_text = "\n".join(str(m["content"]) for m in messages)
            param = "max_tokens"
            if body.max_completion_tokens is not None:
                param = "max_completion_tokens"
            max_tokens = resolve_max_tokens(
                body.requested_max_tokens(), [ids], model.engine.max_model_len, None, param
            )
            top = (body.top_logprobs or 0) if body.logprobs else None
            created = int(time.time())
            started: set[int] = set()

            def render(upd: Update) -> list[bytes]:
                out = []
                if upd.index not in started:
                    started.add(upd.index)
                    out.append(
                        sse(
                            chat_chunk(
                                ctx.request_id,
                                created,
                                state.model_name,
                                upd.index,
                                {"role": "assistant", "content": ""},
                                None,
                                None,
                            )
                        )
                    )
                lp = chat_logprobs(upd.logprobs, tok.token_text, top) if top is not None else None
                if upd.text or upd.finished or upd.logprobs:
                    delta = {"content": upd.text} if upd.text else {}
                    out.append(
                        sse(
                            chat_chunk(
                                ctx.request_id,
                                created,
                                state.model_name,
                                upd.index,
                                delta,
                                lp,
                                upd.finish_reason,
                            )
                        )
                    )
                return out

            def summary(bufs: list[ChoiceBuffer], gen: Generation) -> dict[str, Any]:
                return chat_body(
                    ctx.request_id,
                    created,
                    state.model_name,
                    bufs,
                    tok.token_text,
                    top,
                    gen.prompt_tokens,
                    gen.completion_tokens,
                )

            return await run(
                request,
                ctx,
                model,
                body,
                [ids],
                max_tokens,
                top,
                render,
                summary,
                "chat.completion.chunk",
            )

        return await guarded(request, ctx, work())

    return router
