"""The KServe / Triton v2 inference protocol over HTTP, as a second face of the server.

``/v2`` (server metadata), ``/v2/health/live``, ``/v2/health/ready``, ``/v2/models/{name}``
(model metadata), ``/v2/models/{name}/ready``, ``/v2/models/{name}/infer`` (BYTES
``text_input`` → ``text_output`` tensors) and Triton's generate extension:
``/v2/models/{name}/generate`` (one JSON answer) and ``/v2/models/{name}/generate_stream``
(SSE, one ``data:`` event per delta). Mounted by ``server.app``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import ValidationError

from .errors import APIError, validation_error
from .protocol import V2GenerateRequest
from .responses import sse
from .state import RequestContext, ServerState
from .v2_common import generate_text, parse_settings

MODEL_INPUTS: list[dict[str, Any]] = [
    {"name": "text_input", "datatype": "BYTES", "shape": [1]},
    {"name": "stream", "datatype": "BOOL", "shape": [1], "optional": True},
    {"name": "sampling_parameters", "datatype": "BYTES", "shape": [1], "optional": True},
    {"name": "exclude_input_in_output", "datatype": "BOOL", "shape": [1], "optional": True},
]
MODEL_OUTPUTS: list[dict[str, Any]] = [{"name": "text_output", "datatype": "BYTES", "shape": [-1]}]


def model_metadata(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "versions": ["1"],
        "platform": "deepseek-runtime",
        "inputs": MODEL_INPUTS,
        "outputs": MODEL_OUTPUTS,
    }


def _tensor_value(inputs: list[dict[str, Any]], name: str) -> Any:
    for t in inputs:
        if isinstance(t, dict) and t.get("name") == name:
            data = t.get("data")
            if isinstance(data, list) and data:
                value = data[0]
                while isinstance(value, list) and value:
                    value = value[0]
                return value
            raise APIError(400, f"input {name} has no data", param="inputs", code="invalid_value")
    return None


def build_v2_router(state: ServerState) -> APIRouter:
    router = APIRouter(tags=["kserve-v2"])

    def check_name(name: str) -> None:
        if name != state.model_name:
            raise APIError(404, f"unknown model {name!r}", param="model", code="model_not_found")

    @router.get("/v2")
    async def server_metadata() -> dict[str, Any]:
        return {
            "name": "deepseek-runtime",
            "version": "2",
            "extensions": ["generate", "generate_stream"],
        }

    @router.get("/v2/health/live")
    async def live() -> Response:
        return Response(status_code=200)

    @router.get("/v2/health/ready")
    async def v2_ready() -> Response:
        return Response(status_code=200 if state.ready else 503)

    @router.get("/v2/models/{name}")
    async def metadata(name: str) -> dict[str, Any]:
        check_name(name)
        return model_metadata(name)

    @router.get("/v2/models/{name}/ready")
    async def model_ready(name: str) -> Response:
        check_name(name)
        return Response(status_code=200 if state.ready else 503)

    async def start(
        request: Request,
        name: str,
        endpoint: str,
        text: str,
        *sources: Any,
        stream: bool,
        max_given: bool,
    ) -> tuple[RequestContext, AsyncIterator[str]]:
        check_name(name)
        _, ctx = state.begin(request, endpoint)
        try:
            settings = parse_settings(*sources, default_stream=stream)
            deltas = await generate_text(state, ctx, text, settings, max_given)
        except APIError as exc:
            state.finish(ctx, exc.status)
            raise
        ctx.prompt_text = text
        return ctx, deltas

    def max_given(*sources: Any) -> bool:
        return any(isinstance(s, dict) and s.get("max_tokens") is not None for s in sources) or any(
            isinstance(s, str) and "max_tokens" in s for s in sources
        )

    async def read_body(request: Request) -> V2GenerateRequest:
        """Triton's examples post JSON without a Content-Type, so parse it ourselves."""
        try:
            data = json.loads(await request.body() or b"null")
        except (ValueError, UnicodeDecodeError):
            raise APIError(400, "request body is not valid JSON", code="invalid_json") from None
        try:
            return V2GenerateRequest.model_validate(data)
        except ValidationError as exc:
            raise validation_error(RequestValidationError(exc.errors())) from None

    body_doc = {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": V2GenerateRequest.model_json_schema()}},
        }
    }

    @router.post("/v2/models/{name}/generate", response_model=None, openapi_extra=body_doc)
    async def generate(name: str, request: Request) -> JSONResponse:
        body = await read_body(request)
        extra = body.model_extra or {}
        sources = (extra, body.parameters, body.sampling_parameters)
        ctx, deltas = await start(
            request,
            name,
            "/v2/generate",
            body.text_input,
            *sources,
            stream=False,
            max_given=max_given(*sources),
        )
        text = "".join([d async for d in deltas])
        return JSONResponse(
            {
                "model_name": name,
                "model_version": "1",
                "text_output": text,
                "finish_reason": ctx.finish_reason,
            }
        )

    @router.post("/v2/models/{name}/generate_stream", response_model=None, openapi_extra=body_doc)
    async def generate_stream(name: str, request: Request) -> StreamingResponse:
        body = await read_body(request)
        extra = body.model_extra or {}
        sources = (extra, body.parameters, body.sampling_parameters)
        _, deltas = await start(
            request,
            name,
            "/v2/generate_stream",
            body.text_input,
            *sources,
            stream=True,
            max_given=max_given(*sources),
        )

        async def events() -> AsyncIterator[bytes]:
            async for d in deltas:
                yield sse({"model_name": name, "model_version": "1", "text_output": d})

        return StreamingResponse(events(), media_type="text/event-stream")

    @router.post("/v2/models/{name}/infer", response_model=None)
    async def infer(name: str, request: Request) -> JSONResponse:
        check_name(name)
        try:
            payload = await request.json()
        except ValueError:
            raise APIError(400, "request body is not valid JSON", code="invalid_json") from None
        if not isinstance(payload, dict) or not isinstance(payload.get("inputs"), list):
            raise APIError(
                400, "inputs: a list of tensors is required", param="inputs", code="invalid_value"
            )
        inputs = payload["inputs"]
        text = _tensor_value(inputs, "text_input")
        if not isinstance(text, str):
            raise APIError(
                400,
                "text_input: a BYTES tensor with one string is required",
                param="inputs",
                code="invalid_value",
            )
        sp = _tensor_value(inputs, "sampling_parameters")
        excl = _tensor_value(inputs, "exclude_input_in_output")
        params = payload.get("parameters") if isinstance(payload.get("parameters"), dict) else {}
        flags = {} if excl is None else {"exclude_input_in_output": bool(excl)}
        sources = (params, sp if isinstance(sp, str) else None, flags)
        _, deltas = await start(
            request, name, "/v2/infer", text, *sources, stream=False, max_given=max_given(*sources)
        )
        out = "".join([d async for d in deltas])
        return JSONResponse(
            {
                "model_name": name,
                "model_version": "1",
                "id": payload.get("id", ""),
                "outputs": [
                    {"name": "text_output", "datatype": "BYTES", "shape": [1], "data": [out]}
                ],
            }
        )

    return router
