"""vLLM's ``POST /tokenize`` and ``POST /detokenize``, for clients that count or inspect tokens.

Same bodies and answers as vLLM's::

    /tokenize    {prompt | messages[, tools], add_special_tokens, add_generation_prompt,
                  return_token_strs}  →  {count, max_model_len, tokens, token_strs}
    /detokenize  {tokens}             →  {prompt}

``messages`` are rendered with the checkpoint's chat template exactly as
``/v1/chat/completions`` renders them, so ``count`` is the prompt size a chat request
will be charged. ``model`` is optional (vLLM's too) but must name the served model when
given. Mounted by ``server.openai_routes``; no generation, so no rate-limit charge.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from .chat_tools import template_tools
from .errors import APIError
from .preparation import render_chat
from .protocol import DetokenizeRequest, TokenizeRequest
from .state import LoadedModel, ServerState


def tokenize_body(model: LoadedModel, body: TokenizeRequest) -> dict[str, Any]:
    """The ``/tokenize`` answer (pure apart from the tokenizer's work)."""
    tok = model.tokenizer
    if body.messages is not None:
        tools = template_tools(body.tools)
        text = render_chat(tok, body.messages, body.add_generation_prompt, tools)
        special = bool(body.add_special_tokens)  # the template already wrote BOS
    else:
        text = body.prompt or ""
        special = body.add_special_tokens is not False
    ids = tok.encode(text, add_special_tokens=special)
    strs = [tok.token_text(i) for i in ids] if body.return_token_strs else None
    return {
        "count": len(ids),
        "max_model_len": model.engine.max_model_len,
        "tokens": ids,
        "token_strs": strs,
    }


def detokenize_body(model: LoadedModel, body: DetokenizeRequest) -> dict[str, Any]:
    """The ``/detokenize`` answer; ids beyond the vocabulary are a 400, not a 500."""
    tok = model.tokenizer
    if any(t >= tok.vocab_size for t in body.tokens):
        raise APIError(
            400,
            f"tokens: ids must be below the vocabulary size {tok.vocab_size}",
            param="tokens",
            code="invalid_value",
        )
    return {"prompt": tok.decode(body.tokens)}


def build_tokenize_router(state: ServerState) -> APIRouter:
    router = APIRouter(tags=["vllm"])

    def checked(request: Request, name: str | None) -> LoadedModel:
        model = state.require_model()
        state.authenticate(request)
        if name is not None:
            state.check_model_name(name)
        return model

    @router.post("/tokenize")
    async def tokenize(body: TokenizeRequest, request: Request) -> dict[str, Any]:
        return tokenize_body(checked(request, body.model), body)

    @router.post("/detokenize")
    async def detokenize(body: DetokenizeRequest, request: Request) -> dict[str, Any]:
        return detokenize_body(checked(request, body.model), body)

    return router
