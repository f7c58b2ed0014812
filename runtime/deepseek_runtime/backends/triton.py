"""The ``triton`` backend: proxies generation to a Triton Inference Server over gRPC.

Speaks the tensor names of Triton's vLLM backend (``text_input``, ``stream``,
``sampling_parameters`` JSON, ``exclude_input_in_output`` → ``text_output``) through
``tritonclient.grpc.aio``'s bidirectional ``stream_infer``. The tokenizer stays local
(``--model`` points at the checkpoint's tokenizer files) to render chat templates and
count tokens. ``start`` checks that the server is live and the model ready and says
which is wrong. Tested against this project's own server's gRPC v2 face
(``server.grpc_v2``), since a Triton server cannot run here. Called by
``backends.load_model``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np

from ..engine.api import (
    AsyncEngine,
    EngineError,
    EngineStats,
    FinishReason,
    RequestOutput,
    SamplingParams,
)
from .loaded import LoadedModel
from .model_files import max_positions
from .options import TritonEngineOptions
from .tokenizer import ServerTokenizer
from .vllm import vllm_sampling_kwargs

FALLBACK_MAX_MODEL_LEN = 4096
"""The length limit when neither ``--max-model-len`` nor ``config.json`` gives one."""

# vLLM SamplingParams fields that Triton's vLLM backend takes from ``sampling_parameters``
# (it builds a ``vllm.SamplingParams`` from them); seed and stop are sent only when set.
_TRITON_SAMPLING_KEYS = (
    "max_tokens",
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "repetition_penalty",
    "presence_penalty",
    "frequency_penalty",
    "ignore_eos",
)


def triton_sampling_parameters(params: SamplingParams) -> dict[str, Any]:
    """The JSON object Triton's vLLM backend reads from ``sampling_parameters``."""
    vllm_kwargs = vllm_sampling_kwargs(params)
    out = {key: vllm_kwargs[key] for key in _TRITON_SAMPLING_KEYS}
    if params.seed is not None:
        out["seed"] = params.seed
    if params.stop:
        out["stop"] = list(params.stop)
    return out


class TritonEngine(AsyncEngine):
    def __init__(self, url: str, model: str, tokenizer: ServerTokenizer, max_len: int) -> None:
        self.url = url
        self.model = model
        self._tok = tokenizer
        self._max_len = max_len
        self._client: Any = None
        self._running = 0

    async def start(self) -> None:
        import tritonclient.grpc.aio as grpcclient  # noqa: PLC0415
        from tritonclient.utils import InferenceServerException  # noqa: PLC0415

        if self._client is None:
            self._client = grpcclient.InferenceServerClient(self.url)
        try:
            live = await self._client.is_server_live(client_timeout=10)
        except InferenceServerException as exc:
            raise EngineError(f"cannot reach the Triton server at {self.url}: {exc}") from None
        if not live:
            raise EngineError(f"the Triton server at {self.url} is not live")
        try:
            ready = await self._client.is_model_ready(self.model, client_timeout=10)
        except InferenceServerException as exc:
            raise EngineError(f"Triton at {self.url}: model {self.model!r}: {exc}") from None
        if not ready:
            raise EngineError(
                f"model {self.model!r} is missing or not ready on the Triton server at {self.url}"
            )

    async def shutdown(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    def generate(
        self, request_id: str, prompt_token_ids: list[int], params: SamplingParams
    ) -> AsyncIterator[RequestOutput]:
        if self._client is None:
            raise EngineError("the Triton backend is not connected")
        if params.logprobs is not None:
            raise EngineError("logprobs are not available through the triton engine")
        if params.guided is not None:
            raise EngineError(
                "structured outputs (response_format / guided_* / a forced tool_choice) are "
                "not available through the triton engine; use --engine native"
            )
        return self._stream(request_id, list(prompt_token_ids), params)

    def _inputs(self, prompt: str, params: SamplingParams) -> list[Any]:
        from tritonclient.grpc import InferInput  # noqa: PLC0415

        def tensor(name: str, dtype: str, value: Any) -> Any:
            t = InferInput(name, [1], dtype)
            t.set_data_from_numpy(np.array([value], dtype=object if dtype == "BYTES" else bool))
            return t

        return [
            tensor("text_input", "BYTES", prompt.encode("utf-8")),
            tensor("stream", "BOOL", True),
            tensor(
                "sampling_parameters",
                "BYTES",
                json.dumps(triton_sampling_parameters(params)).encode("utf-8"),
            ),
            tensor("exclude_input_in_output", "BOOL", True),
        ]

    async def _stream(
        self, request_id: str, ids: list[int], params: SamplingParams
    ) -> AsyncIterator[RequestOutput]:
        from tritonclient.utils import InferenceServerException  # noqa: PLC0415

        prompt = self._tok.decode(ids, skip_special_tokens=False)
        bos = self._tok.bos_token
        if bos and prompt.startswith(bos):
            # the remote tokenises text_input with special tokens (as vLLM does): one BOS
            prompt = prompt[len(bos) :]
        inputs = self._inputs(prompt, params)

        async def requests() -> AsyncIterator[dict[str, Any]]:
            yield {"model_name": self.model, "inputs": inputs, "request_id": request_id}

        produced = 0
        self._running += 1
        responses = self._client.stream_infer(requests())
        try:
            async for result, error in responses:
                if error is not None:
                    yield _failed(request_id, len(ids), produced, f"Triton: {error}")
                    return
                final = result.get_response().parameters["triton_final_response"].bool_param
                data = result.as_numpy("text_output")
                text = (
                    b"".join(data.reshape(-1)).decode("utf-8", "replace")
                    if (data is not None)
                    else ""
                )
                new_ids = self._tok.encode(text, add_special_tokens=False) if text else []
                produced += len(new_ids)
                if text:
                    yield RequestOutput(request_id, new_ids, text, False, None, len(ids), produced)
                if final:
                    break
            reason = FinishReason.LENGTH if produced >= params.max_tokens else FinishReason.STOP
            yield RequestOutput(request_id, [], "", True, reason, len(ids), produced)
        except InferenceServerException as exc:
            yield _failed(request_id, len(ids), produced, f"Triton at {self.url}: {exc}")
        finally:
            self._running -= 1
            responses.cancel()

    async def abort(self, request_id: str) -> None:
        return None  # cancelling the consumer cancels the gRPC stream (see _stream)

    def stats(self) -> EngineStats:
        return EngineStats(self._running, 0, 0.0, 0, 0, 0, 0, 0)

    @property
    def max_model_len(self) -> int:
        return self._max_len


def _failed(request_id: str, prompt_tokens: int, produced: int, error: str) -> RequestOutput:
    """The last update of a request that the remote server (or the stream to it) failed."""
    return RequestOutput(
        request_id, [], "", True, FinishReason.ERROR, prompt_tokens, produced, error=error
    )


async def load(options: TritonEngineOptions) -> LoadedModel:
    tokenizer = ServerTokenizer.from_model_dir(options.model_dir)
    limit = (
        options.max_model_len or max_positions(Path(options.model_dir)) or FALLBACK_MAX_MODEL_LEN
    )
    engine = TritonEngine(options.url, options.remote_model, tokenizer, limit)
    await engine.start()
    return LoadedModel(engine, tokenizer)
