"""``/v1/models``, ``/v1/completions`` and ``/v1/chat/completions`` (SSE when ``stream``).

Each route only wires the steps together::

    GenerationDriver.handle   guards, the ``model`` name; any later APIError is audited
    read_*_prompt(s)          tokenise, check, content filter   (server.preparation)
    passed                    the audit line may record the prompt from here on
    plan_*                    max_tokens, n, SamplingParams     (server.preparation)
    driver.answer             start → answer → cleanup          (server.driver)
      with renderers          CompletionBody / CompletionChunks (server.completion_responses)
                              ChatBody / ChatChunks             (server.chat_responses)

Chat answers are parsed for R1 reasoning (``--reasoning-parser``) and DeepSeek tool calls
(``--tool-call-parser``) as :class:`~.chat_output.ChatOutputOptions` say. The vLLM
``/tokenize`` and ``/detokenize`` routes (``server.tokenize_routes``) are mounted here
too. Mounted by ``server.app``.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ..backends.tokenizer import ServerTokenizer
from .chat_output import ChatOutputOptions
from .chat_responses import ChatBody, ChatChunks
from .chat_tools import allowed_tool_names
from .completion_responses import CompletionBody, CompletionChunks
from .driver import GenerationDriver
from .preparation import (
    Limits,
    PromptBatch,
    plan_chat,
    plan_completion,
    read_chat_prompt,
    read_completion_prompts,
)
from .protocol import ChatCompletionRequest, CompletionRequest
from .reasoning import THINK_END
from .responses import ResponseHead
from .state import LoadedModel, RequestContext, ServerState
from .tokenize_routes import build_tokenize_router
from .tool_grammar import MARKERS


def think_end_id(tok: ServerTokenizer) -> int | None:
    """``</think>``'s id when it is one special token, which decoding drops from the text.

    Where ``</think>`` decodes as text (DeepSeek-R1's own tokenizers) the text marks the
    end of the block, and the id is not needed.
    """
    ids = tok.encode(THINK_END, add_special_tokens=False)
    return ids[0] if len(ids) == 1 and not tok.decode(ids) else None


def single_token_markers(tok: ServerTokenizer) -> frozenset[str]:
    """The tool-call and reasoning markers this vocabulary has as one token each."""
    return frozenset(m for m in MARKERS if len(tok.encode(m, add_special_tokens=False)) == 1)


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
    router.include_router(build_tokenize_router(state))
    driver = GenerationDriver(state)
    config = state.config

    def chat_options(body: ChatCompletionRequest, tok: ServerTokenizer) -> ChatOutputOptions:
        names = allowed_tool_names(body, config.tool_call_parser)
        if config.reasoning_parser is None:
            return ChatOutputOptions(tool_names=names)
        return ChatOutputOptions(True, think_end_id(tok), names)

    def limits(model: LoadedModel) -> Limits:
        return Limits(model.engine.max_model_len, model.tokenizer.vocab_size, state.config.max_n)

    def passed(ctx: RequestContext, batch: PromptBatch) -> PromptBatch:
        """The prompt passed its checks: from here on the audit line may record it."""
        ctx.prompt_text = batch.audit_text
        return batch

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
            tok, lim = model.tokenizer, limits(model)
            batch = passed(ctx, read_completion_prompts(body, tok, lim, state.content_filter))
            plan = plan_completion(body, batch, tok, lim)
            logprobs = plan.generation.params.logprobs is not None
            args = (head(ctx), tok.token_text, plan.prefixes, logprobs, plan.echo)
            whole, chunks = CompletionBody(*args), CompletionChunks(*args)
            return await driver.answer(request, ctx, model, plan.generation, whole, chunks)

        return await driver.handle(request, "/v1/completions", body.model, work)

    @router.post("/v1/chat/completions", response_model=None)
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
        async def work(model: LoadedModel, ctx: RequestContext) -> Response:
            tok, lim = model.tokenizer, limits(model)
            options = chat_options(body, tok)
            batch = passed(ctx, read_chat_prompt(body, tok, lim, state.content_filter))
            markers = single_token_markers(tok) if body.tools else frozenset()
            plan = plan_chat(body, batch, lim, reasoning=options.reasoning, token_markers=markers)
            args = (head(ctx), tok.token_text, plan.params.logprobs, options)
            return await driver.answer(
                request, ctx, model, plan, ChatBody(*args), ChatChunks(*args)
            )

        return await driver.handle(request, "/v1/chat/completions", body.model, work)

    return router
