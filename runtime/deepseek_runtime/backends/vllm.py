"""The ``vllm`` backend: vLLM's async engine in this process, behind our AsyncEngine seam.

``vllm_engine_args`` (pure, unit-tested) maps our ``VLLMEngineOptions`` to vLLM's engine
arguments (tensor / pipeline parallel size, expert parallel, quantization, KV-cache dtype,
max model length, GPU memory utilisation, batching and prefix caching); ``vllm_sampling_kwargs``
maps SamplingParams. :class:`VLLMEngine` turns vLLM's cumulative outputs into our
deltas. vLLM itself is imported only in ``load`` (it needs a CUDA GPU); without it the
server refuses to start (``backends.check_available``). Called by ``backends.load_model``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from ..engine.api import (
    AsyncEngine,
    EngineError,
    EngineStats,
    FinishReason,
    RequestOutput,
    SamplingParams,
    TokenLogprob,
)
from .loaded import LoadedModel
from .options import VLLMEngineOptions
from .tokenizer import ServerTokenizer

_FINISH = {"stop": FinishReason.STOP, "length": FinishReason.LENGTH, "abort": FinishReason.ABORT}


def vllm_engine_args(options: VLLMEngineOptions) -> dict[str, Any]:
    """Keyword arguments for ``vllm.AsyncEngineArgs``; options left unset are omitted."""
    args: dict[str, Any] = {
        "model": options.model_dir,
        "served_model_name": [options.served_model_name],
        "tensor_parallel_size": options.tensor_parallel_size,
        "pipeline_parallel_size": options.pipeline_parallel_size,
        "enable_expert_parallel": options.enable_expert_parallel,
        "kv_cache_dtype": options.kv_cache_dtype,
        "gpu_memory_utilization": options.gpu_memory_utilization,
        "dtype": options.dtype,
        "max_num_seqs": options.max_num_seqs,
        "max_num_batched_tokens": options.max_num_batched_tokens,
        "block_size": options.block_size,
        "enable_prefix_caching": options.enable_prefix_caching,
    }
    if options.quantization is not None:
        args["quantization"] = options.quantization
    if options.max_model_len is not None:
        args["max_model_len"] = options.max_model_len
    if options.num_blocks is not None:
        args["num_gpu_blocks_override"] = options.num_blocks
    return args


def vllm_sampling_kwargs(params: SamplingParams) -> dict[str, Any]:
    """Keyword arguments for ``vllm.SamplingParams`` (one sequence per engine request)."""
    return {
        "n": 1,
        "max_tokens": params.max_tokens,
        "temperature": params.temperature,
        "top_p": params.top_p,
        "top_k": params.top_k if params.top_k > 0 else -1,
        "min_p": params.min_p,
        "repetition_penalty": params.repetition_penalty,
        "presence_penalty": params.presence_penalty,
        "frequency_penalty": params.frequency_penalty,
        "seed": params.seed,
        "stop": list(params.stop),
        "stop_token_ids": list(params.stop_token_ids),
        "ignore_eos": params.ignore_eos,
        "logprobs": params.logprobs,
    }


class VLLMEngine(AsyncEngine):
    """Adapts ``vllm.AsyncLLMEngine`` (V0 or V1) to :class:`AsyncEngine`."""

    def __init__(self, engine: Any, sampling_cls: Any, max_model_len: int) -> None:
        self._engine = engine
        self._sampling_cls = sampling_cls
        self._max_model_len = max_model_len
        self._running = 0

    async def start(self) -> None:
        return None

    async def shutdown(self) -> None:
        stop = getattr(self._engine, "shutdown", None)
        if callable(stop):
            stop()

    def generate(
        self, request_id: str, prompt_token_ids: list[int], params: SamplingParams
    ) -> AsyncIterator[RequestOutput]:
        if len(prompt_token_ids) >= self._max_model_len:
            raise EngineError(f"prompt is longer than max_model_len={self._max_model_len}")
        sp = self._sampling_cls(**vllm_sampling_kwargs(params))
        return self._stream(request_id, list(prompt_token_ids), sp)

    async def _stream(
        self, request_id: str, ids: list[int], sp: Any
    ) -> AsyncIterator[RequestOutput]:
        seen_tokens = seen_text = 0
        self._running += 1
        try:
            async for out in self._engine.generate({"prompt_token_ids": ids}, sp, request_id):
                c = out.outputs[0]
                new_ids = list(c.token_ids[seen_tokens:])
                logprobs = [
                    _logprob(tid, entry)
                    for tid, entry in zip(new_ids, (c.logprobs or [])[seen_tokens:], strict=False)
                ]
                text = c.text[seen_text:]
                seen_tokens, seen_text = len(c.token_ids), len(c.text)
                reason = _FINISH.get(c.finish_reason or "", FinishReason.STOP)
                yield RequestOutput(
                    request_id,
                    new_ids,
                    text,
                    out.finished,
                    reason if out.finished else None,
                    len(ids),
                    seen_tokens,
                    logprobs,
                )
        finally:
            self._running -= 1

    async def abort(self, request_id: str) -> None:
        await self._engine.abort(request_id)

    def stats(self) -> EngineStats:
        # vLLM publishes its own scheduler figures on its registry; we report what we see.
        return EngineStats(self._running, 0, 0.0, 0, 0, 0, 0, 0)

    @property
    def max_model_len(self) -> int:
        return self._max_model_len


def _logprob(token_id: int, entry: dict[int, Any]) -> TokenLogprob:
    chosen = entry.get(token_id)
    top = sorted(((tid, float(lp.logprob)) for tid, lp in entry.items()), key=lambda t: -t[1])
    return TokenLogprob(token_id, float(chosen.logprob) if chosen else 0.0, tuple(top))


async def load(options: VLLMEngineOptions) -> LoadedModel:
    import vllm  # noqa: PLC0415

    args = vllm.AsyncEngineArgs(**vllm_engine_args(options))
    engine = vllm.AsyncLLMEngine.from_engine_args(args)
    model_config = await engine.get_model_config()
    tokenizer = ServerTokenizer.from_model_dir(options.model_dir)
    wrapped = VLLMEngine(engine, vllm.SamplingParams, int(model_config.max_model_len))
    return LoadedModel(wrapped, tokenizer)
