"""A minimal KServe v2 / Triton gRPC service (grpcio, protos from ``tritonclient.grpc``).

Implements ServerLive, ServerReady, ServerMetadata, ModelReady, ModelMetadata, ModelInfer
and ModelStreamInfer for one LLM model with Triton's vLLM-backend tensor names: BYTES
``text_input`` (+ optional BOOL ``stream``, BYTES ``sampling_parameters`` JSON, BOOL
``exclude_input_in_output``) → BYTES ``text_output``; sampling settings may also come as
request parameters. A streamed (decoupled) request answers with one response per delta
and a last, empty one flagged ``triton_final_response``. API keys are read from the
``authorization`` metadata. This is what the ``triton`` backend is tested against, since
a real Triton server cannot run here. Started by ``server.cli`` when ``--grpc-port`` is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import AsyncIterator
from typing import Any

import grpc
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc

from .errors import APIError
from .roles import Principal
from .state import ServerState
from .v2_common import generate_text, parse_settings
from .v2_routes import MODEL_INPUTS, MODEL_OUTPUTS

_STATUS = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    404: grpc.StatusCode.NOT_FOUND,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    503: grpc.StatusCode.UNAVAILABLE,
}


def decode_bytes_tensor(raw: bytes) -> list[bytes]:
    """Triton's BYTES wire format: each element is a little-endian uint32 length + bytes."""
    out, pos = [], 0
    while pos + 4 <= len(raw):
        (size,) = struct.unpack_from("<I", raw, pos)
        pos += 4
        out.append(raw[pos : pos + size])
        pos += size
    return out


def encode_bytes_tensor(items: list[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(i)) + i for i in items)


def _param_value(p: Any) -> Any:
    kind = p.WhichOneof("parameter_choice")
    return getattr(p, kind) if kind else None


def read_inputs(request: Any) -> dict[str, Any]:
    """First element of each input tensor, by name (BYTES decoded as UTF-8)."""
    values: dict[str, Any] = {}
    for i, tensor in enumerate(request.inputs):
        raw = request.raw_input_contents[i] if i < len(request.raw_input_contents) else None
        if tensor.datatype == "BYTES":
            items = (
                decode_bytes_tensor(raw)
                if raw is not None
                else list(tensor.contents.bytes_contents)
            )
            values[tensor.name] = items[0].decode("utf-8", "replace") if items else None
        elif tensor.datatype == "BOOL":
            values[tensor.name] = (
                bool(raw[0])
                if raw
                else (tensor.contents.bool_contents[0] if tensor.contents.bool_contents else None)
            )
    return values


def _response(request: Any, text: str | None, final: bool) -> Any:
    resp = pb.ModelInferResponse(model_name=request.model_name, model_version="1", id=request.id)
    resp.parameters["triton_final_response"].bool_param = final
    if text is not None:
        out = resp.outputs.add()
        out.name, out.datatype = "text_output", "BYTES"
        out.shape.extend([1])
        resp.raw_output_contents.append(encode_bytes_tensor([text.encode("utf-8")]))
    return resp


class InferenceService(pb_grpc.GRPCInferenceServiceServicer):  # type: ignore[misc]
    def __init__(self, state: ServerState) -> None:
        self.state = state

    def _key(self, context: Any) -> Principal:
        md = {k: v for k, v in (context.invocation_metadata() or ())}
        try:
            return self.state.authenticate_headers(md.get("authorization"), md.get("x-api-key"))
        except APIError as exc:  # refused before a context exists: audit it here
            self.state.write_audit("grpc/ModelStreamInfer", exc.status, None, None)
            raise

    async def ServerLive(self, request: Any, context: Any) -> Any:  # noqa: N802
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request: Any, context: Any) -> Any:  # noqa: N802
        return pb.ServerReadyResponse(ready=self.state.ready)

    async def ServerMetadata(self, request: Any, context: Any) -> Any:  # noqa: N802
        return pb.ServerMetadataResponse(
            name="deepseek-runtime", version="2", extensions=["generate", "generate_stream"]
        )

    async def ModelReady(self, request: Any, context: Any) -> Any:  # noqa: N802
        return pb.ModelReadyResponse(
            ready=request.name == self.state.model_name and self.state.ready
        )

    async def ModelMetadata(self, request: Any, context: Any) -> Any:  # noqa: N802
        if request.name != self.state.model_name:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown model {request.name!r}")
        resp = pb.ModelMetadataResponse(
            name=request.name, versions=["1"], platform="deepseek-runtime"
        )
        for spec, target in ((MODEL_INPUTS, resp.inputs), (MODEL_OUTPUTS, resp.outputs)):
            for t in spec:
                target.add(name=t["name"], datatype=t["datatype"], shape=t["shape"])
        return resp

    async def _deltas(
        self, request: Any, context: Any, default_stream: bool
    ) -> tuple[bool, AsyncIterator[str]]:
        state = self.state
        if request.model_name != state.model_name:
            raise APIError(404, f"unknown model {request.model_name!r}")
        if state.draining:
            raise APIError(503, "server is shutting down")
        state.require_model()
        ctx = state.context(self._key(context), "grpc/ModelStreamInfer")
        try:
            values = read_inputs(request)
            text = values.get("text_input")
            if not isinstance(text, str):
                raise APIError(400, "text_input: a BYTES tensor with one string is required")
            params = {
                k: _param_value(v)
                for k, v in request.parameters.items()
                if not k.startswith("triton_")
            }
            flags = {
                k: values[k]
                for k in ("stream", "exclude_input_in_output")
                if values.get(k) is not None
            }
            sp = values.get("sampling_parameters")
            settings = parse_settings(params, sp, flags, default_stream=default_stream)
            given = "max_tokens" in params or (isinstance(sp, str) and "max_tokens" in sp)
            deltas = await generate_text(state, ctx, text, settings, given)
        except APIError as exc:
            state.finish(ctx, exc.status)
            raise
        return settings.stream, deltas

    async def ModelInfer(self, request: Any, context: Any) -> Any:  # noqa: N802
        try:
            _, deltas = await self._deltas(request, context, default_stream=False)
        except APIError as exc:
            await context.abort(_STATUS.get(exc.status, grpc.StatusCode.INTERNAL), exc.message)
        text = "".join([d async for d in deltas])
        return _response(request, text, True)

    async def ModelStreamInfer(  # noqa: N802 (the gRPC method name)
        self, request_iterator: Any, context: Any
    ) -> AsyncIterator[Any]:
        queue: asyncio.Queue[Any] = asyncio.Queue()
        tasks: set[asyncio.Task[None]] = set()

        async def one(request: Any) -> None:
            flag = "triton_enable_empty_final_response"
            empty_final = flag in request.parameters and request.parameters[flag].bool_param
            try:
                stream, deltas = await self._deltas(request, context, default_stream=True)
                if stream:
                    async for d in deltas:
                        await queue.put(
                            pb.ModelStreamInferResponse(infer_response=_response(request, d, False))
                        )
                    final = _response(request, None if empty_final else "", True)
                else:
                    final = _response(request, "".join([d async for d in deltas]), True)
                await queue.put(pb.ModelStreamInferResponse(infer_response=final))
            except APIError as exc:
                await queue.put(
                    pb.ModelStreamInferResponse(error_message=f"[{exc.status}] {exc.message}")
                )

        async def reader() -> None:
            async for request in request_iterator:
                task = asyncio.create_task(one(request))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            while tasks:
                await asyncio.gather(*list(tasks), return_exceptions=True)
            await queue.put(None)

        read_task = asyncio.create_task(reader())
        try:
            while (item := await queue.get()) is not None:
                yield item
        finally:
            read_task.cancel()
            for t in list(tasks):
                t.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.gather(read_task, *tasks, return_exceptions=True)


async def start_grpc_server(state: ServerState, host: str, port: int) -> grpc.aio.Server:
    server = grpc.aio.server()
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceService(state), server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise ValueError(f"--grpc-port {port}: cannot listen on {host}:{port}")
    await server.start()
    return server
