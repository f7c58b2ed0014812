"""The synchronous engine: ``step()`` = schedule -> execute -> sample -> update.

Used by :class:`deepseek_runtime.engine.async_engine.NativeAsyncEngine` (which runs
``step()`` in a worker thread), by the benchmark, and by tests. Single-threaded: every
method must be called from one thread at a time.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import torch

from deepseek_runtime.engine.api import (
    EngineError,
    EngineStats,
    FinishReason,
    RequestOutput,
    SamplingParams,
)
from deepseek_runtime.engine.config import EngineConfig
from deepseek_runtime.engine.detokenizer import TokenDecoder
from deepseek_runtime.engine.output_processor import OutputProcessor
from deepseek_runtime.engine.prompt_logprobs import PromptLogprobs
from deepseek_runtime.engine.request import Request
from deepseek_runtime.engine.sampler import Sampler, SampleRow
from deepseek_runtime.engine.scheduler import Scheduler
from deepseek_runtime.engine.step_io import ModelExecutor, SchedulerOutput

if TYPE_CHECKING:
    from deepseek_runtime.engine.structured import StructuredOutputs
from deepseek_runtime.kv import KVCacheManager

log = logging.getLogger(__name__)


class LLMEngine:
    """Owns the scheduler, KV manager, sampler and output processor of one model."""

    def __init__(
        self,
        runner: ModelExecutor,
        config: EngineConfig,
        *,
        tokenizer: TokenDecoder | None = None,
        eos_token_ids: Iterable[int] = (),
    ) -> None:
        capacity = runner.num_blocks * runner.block_size
        if config.max_model_len > capacity:
            raise ValueError(
                f"max_model_len {config.max_model_len} exceeds the KV cache capacity "
                f"({runner.num_blocks} blocks x {runner.block_size} = {capacity} tokens)"
            )
        self.runner = runner
        self.config = config
        self.vocab_size = runner.vocab_size
        self.kv = KVCacheManager(
            runner.num_blocks,
            runner.block_size,
            enable_prefix_caching=config.enable_prefix_caching,
        )
        self.scheduler = Scheduler(
            self.kv,
            max_num_seqs=config.max_num_seqs,
            max_num_batched_tokens=config.max_num_batched_tokens,
            eos_token_ids=eos_token_ids,
            watermark_blocks=int(config.watermark * runner.num_blocks),
        )
        self.sampler = Sampler(config.seed)
        self._tokenizer = tokenizer
        self._eos_token_ids = tuple(eos_token_ids)
        self.outputs = OutputProcessor(tokenizer)
        self.prompt_logprobs = PromptLogprobs()
        self.num_steps = 0
        self._gen_ids = itertools.count()

    # -- requests --------------------------------------------------------------------
    def validate(
        self, request_id: str, prompt_token_ids: Sequence[int], params: SamplingParams
    ) -> None:
        """Raise EngineError (user-facing message) for a request the engine refuses.

        The engine's one check of a request against the model (length, token ids, stop
        token ids), made where requests cross into the engine: whatever front end sent
        it, the model step trusts it afterwards (the runner's per-step scan is a debug
        switch, ``NativeEngineOptions.debug_checks``)."""
        n = len(prompt_token_ids)
        if n == 0:
            raise EngineError("the prompt is empty; send at least one token")
        if n >= self.config.max_model_len:
            raise EngineError(
                f"the prompt has {n} tokens; this model accepts at most "
                f"{self.config.max_model_len - 1} prompt tokens (max_model_len "
                f"{self.config.max_model_len}, leaving room for one generated token)"
            )
        bad = [t for t in prompt_token_ids if not 0 <= t < self.vocab_size]
        if bad:
            raise EngineError(
                f"token id {bad[0]} is outside the vocabulary (0..{self.vocab_size - 1})"
            )
        if params.n != 1:
            raise EngineError("the engine generates one sequence per request (n must be 1)")
        bad_stop = [t for t in params.stop_token_ids if not 0 <= t < self.vocab_size]
        if bad_stop:
            raise EngineError(f"stop token id {bad_stop[0]} is outside the vocabulary")
        if request_id in self.scheduler.requests:
            raise EngineError(f"request id {request_id!r} is already in use")
        if params.guided is not None:
            self.structured_outputs().compile(params.guided)
        if params.prompt_logprobs is not None and not hasattr(self.runner, "execute_all_rows"):
            raise EngineError("this model runner cannot return prompt logprobs")

    def structured_outputs(self) -> StructuredOutputs:
        """The grammar compiler and matchers, made on the first structured request
        (xgrammar is imported only then); EngineError without a tokenizer."""
        if self.sampler.structured is None:
            if self._tokenizer is None:
                raise EngineError("structured outputs need the checkpoint's tokenizer")
            from deepseek_runtime.engine import structured  # noqa: PLC0415

            info = structured.tokenizer_info(self._tokenizer, self.vocab_size, self._eos_token_ids)
            self.sampler.structured = structured.StructuredOutputs(info)
        return self.sampler.structured

    def add_request(
        self, request_id: str, prompt_token_ids: Sequence[int], params: SamplingParams
    ) -> None:
        """Queue a request; raises EngineError for bad input (nothing else changes)."""
        self.validate(request_id, prompt_token_ids, params)
        self.add_validated_request(request_id, prompt_token_ids, params)

    def add_validated_request(
        self, request_id: str, prompt_token_ids: Sequence[int], params: SamplingParams
    ) -> None:
        """Queue a request that :meth:`validate` accepted, without scanning it again
        (``NativeAsyncEngine`` validates on arrival and queues between steps)."""
        request = Request(request_id, list(prompt_token_ids), params, self.config.max_model_len)
        self.scheduler.add(request)
        self.sampler.add_request(request_id, params.seed, params.guided)
        self.outputs.add_request(request)
        self.prompt_logprobs.add_request(request)

    def abort_request(
        self, request_id: str, reason: FinishReason = FinishReason.ABORT, error: str | None = None
    ) -> RequestOutput | None:
        """End a request now and free its KV blocks; None when it is unknown/finished."""
        request = self.scheduler.finish(request_id, reason)
        if request is None:
            return None
        self.sampler.remove_request(request_id)
        self.prompt_logprobs.pop(request_id)
        return self.outputs.on_finish(request, reason, error)

    def has_unfinished_requests(self) -> bool:
        return self.scheduler.has_unfinished()

    # -- the step --------------------------------------------------------------------
    @torch.inference_mode()
    def step(self) -> list[RequestOutput]:
        """Run one engine step; return the deltas of requests that progressed."""
        sched = self.scheduler.schedule()
        if sched.is_empty:
            return []
        self.num_steps += 1
        try:
            logits = self._execute(sched)
        except Exception as exc:  # the model failed: fail this batch, keep serving
            log.exception("model step failed; failing %d requests", len(sched.chunks))
            outs = [
                self.abort_request(c.request_id, FinishReason.ERROR, f"model step failed: {exc}")
                for c in sched.chunks
            ]
            return [o for o in outs if o is not None]
        requests = self.scheduler.requests
        rows: list[int] = []
        sample_rows: list[SampleRow] = []
        for i, chunk in enumerate(sched.chunks):
            if chunk.sample:
                req = requests[chunk.request_id]
                rows.append(i)
                sample_rows.append(
                    SampleRow(req.request_id, req.params, req.all_token_ids, req.num_prompt_tokens)
                )
        if len(rows) == logits.shape[0]:
            picked = logits
        else:
            picked = logits[torch.tensor(rows, dtype=torch.long, device=logits.device)]
        results = self.sampler.sample(picked, sample_rows)
        by_id = {row.request_id: res for row, res in zip(sample_rows, results, strict=True)}
        sampled = {rid: res.token_id for rid, res in by_id.items()}
        updated = self.scheduler.update_from_output(sched, sampled)
        outputs: list[RequestOutput] = []
        for req in updated:
            res = by_id[req.request_id]
            if res.grammar_done and not req.is_finished:  # the structured output is complete
                self.scheduler.finish(req.request_id, FinishReason.STOP)
            out, stop_hit = self.outputs.on_token(req, res.token_id, res.logprob)
            if stop_hit:
                self.scheduler.finish(req.request_id, FinishReason.STOP)
            if out.finished:
                self.sampler.remove_request(req.request_id)
            if req.num_output_tokens == 1:
                out.prompt_logprobs = self.prompt_logprobs.pop(req.request_id)
            outputs.append(out)
        return outputs

    def _execute(self, sched: SchedulerOutput) -> torch.Tensor:
        """The model step; every row of the chunks whose prompt logprobs are wanted."""
        full = self.prompt_logprobs.wanted(sched.chunks, self.scheduler.requests)
        if not full:
            return self.runner.execute(sched.chunks)
        logits, rows = self.runner.execute_all_rows(sched.chunks, full)  # type: ignore[attr-defined]
        requests = self.scheduler.requests
        for k, chunk_rows in zip(full, rows, strict=True):
            chunk = sched.chunks[k]
            self.prompt_logprobs.record(chunk, requests[chunk.request_id], chunk_rows)
        return logits  # type: ignore[no-any-return]

    # -- figures ---------------------------------------------------------------------
    def stats(self) -> EngineStats:
        return EngineStats(
            num_running=self.scheduler.num_running,
            num_waiting=self.scheduler.num_waiting,
            kv_cache_usage=self.kv.usage(),
            num_preemptions=self.scheduler.num_preemptions,
            prefix_cache_queries=self.kv.prefix_cache_queries,
            prefix_cache_hits=self.kv.prefix_cache_hits,
            num_blocks_total=self.kv.num_blocks,
            num_blocks_free=self.kv.num_free_blocks,
            kv_cache_waste=self.kv.waste_fraction(),
        )

    def generate(
        self, prompts: Sequence[Sequence[int]], params: SamplingParams | Sequence[SamplingParams]
    ) -> list[list[int]]:
        """Run prompts to completion (batch helper for tests and benchmarks)."""
        plist = [params] * len(prompts) if isinstance(params, SamplingParams) else list(params)
        ids = [f"generate-{next(self._gen_ids)}" for _ in prompts]
        for rid, prompt, p in zip(ids, prompts, plist, strict=True):
            self.add_request(rid, prompt, p)
        tokens: dict[str, list[int]] = {rid: [] for rid in ids}
        pending = set(ids)
        while pending:
            for out in self.step():
                tokens[out.request_id].extend(out.new_token_ids)
                if out.finished:
                    pending.discard(out.request_id)
        return [tokens[rid] for rid in ids]
