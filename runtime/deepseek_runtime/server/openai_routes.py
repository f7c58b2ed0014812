"""``/v1/models``, ``/v1/completions`` and ``/v1/chat/completions`` (SSE when ``stream``).

Each route only wires the steps together::

    GenerationDriver.handle   guards; an APIError from any later step is audited
    check_model_name
    read_*_prompts            tokenise, check, content filter   (server.preparation)
    ctx.prompt_text           recorded once the prompt has passed
    plan_*                    max_tokens, n, SamplingParams     (server.preparation)
    driver.whole / .stream    start → answer → cleanup          (server.driver)
      with a renderer         CompletionBody / CompletionChunks (server.completion_responses)
                              ChatBody / ChatChunks             (server.chat_responses)

Mounted by ``server.app``.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from .chat_responses import ChatBody, ChatChunks
from .completion_responses import CompletionBody, CompletionChunks
from .driver import GenerationDriver
from .preparation import (
    Limits,
    plan_chat,
    plan_completion,
    read_chat_prompt,
    read_completion_prompts,
)
from .protocol import ChatCompletionRequest, CompletionRequest
from .responses import ResponseHead
from .state import LoadedModel, RequestContext, ServerState


def model_list(name: str, max_model_len: int | None) -> dict[str, Any]:
    """``GET /v1/models``: the one served model."""
    return {
        "object": "list",
        "data": [
            {
                "id": name,
                "object": "model",
                "created": 0,
                "owned_by": "deepseek-runtime",
                "root": name,
                "max_model_len": max_model_len,
            }
        ],
    }


def build_openai_router(state: ServerState) -> APIRouter:
    router = APIRouter(tags=["openai"])
    driver = GenerationDriver(state)

    def limits(model: LoadedModel) -> Limits:
        return Limits(model.engine.max_model_len, model.tokenizer.vocab_size, state.config.max_n)

    def head(ctx: RequestContext) -> ResponseHead:
        return ResponseHead(ctx.request_id, int(time.time()), state.model_name)

    @router.get("/v1/models")
    async def list_models(request: Request) -> dict[str, Any]:
        state.authenticate(request)
        return model_list(
            state.model_name, state.model.engine.max_model_len if state.model else None
        )

    @router.post("/v1/completions", response_model=None)
    async def completions(body: CompletionRequest, request: Request) -> Response:
        async def work(model: LoadedModel, ctx: RequestContext) -> Response:
            state.check_model_name(body.model)
            tok, lim = model.tokenizer, limits(model)
            batch = read_completion_prompts(body, tok, lim, state.content_filter)
            ctx.prompt_text = batch.audit_text
            plan = plan_completion(body, batch, tok, lim)
            gen, logprobs = plan.generation, plan.generation.params.logprobs is not None
            if gen.stream:
                chunks = CompletionChunks(head(ctx), tok.token_text, plan.prefixes, logprobs)
                return await driver.stream(ctx, model, gen, chunks)
            whole = CompletionBody(head(ctx), tok.token_text, plan.prefixes, logprobs)
            return await driver.whole(request, ctx, model, gen, whole)

        return await driver.handle(request, "/v1/completions", work)

    @router.post("/v1/chat/completions", response_model=None)
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
        async def work(model: LoadedModel, ctx: RequestContext) -> Response:
            state.check_model_name(body.model)
            tok, lim = model.tokenizer, limits(model)
            batch = read_chat_prompt(body, tok, lim, state.content_filter)
            ctx.prompt_text = batch.audit_text
            plan = plan_chat(body, batch, lim)
            top = plan.params.logprobs
            if plan.stream:
                return await driver.stream(
                    ctx, model, plan, ChatChunks(head(ctx), tok.token_text, top)
                )
            return await driver.whole(
                request, ctx, model, plan, ChatBody(head(ctx), tok.token_text, top)
            )

        return await driver.handle(request, "/v1/chat/completions", work)

    return router
