"""Continuous-batching scheduler: queues, token budget, chunked prefill, preemption.

Called by :class:`deepseek_runtime.engine.llm_engine.LLMEngine` once per step. It owns
the waiting and running queues and each request's progress counters; it asks the
:class:`~deepseek_runtime.kv.KVCacheManager` for blocks and never touches tensors.

One rule for prefill and decode alike: give each request up to
``num_tokens - num_computed_tokens`` tokens, within the step's token budget::

    step budget = max_num_batched_tokens
    1. running requests, oldest first: decode (1 token) or the next prefill chunk.
       No blocks left -> preempt the newest running request (free its blocks, it
       goes back to the front of the waiting queue and is recomputed later).
    2. if nothing was preempted: admit waiting requests (oldest first) while budget,
       seats (max_num_seqs) and blocks last; a prefix-cache hit skips cached tokens.

Preemption releases the request's blocks but the KV manager keeps its hash chain;
finishing or aborting frees both. Each ``ScheduledChunk.block_table`` is the KV
manager's own list for that request (no copy per step): the runner reads it during
``execute`` and never changes it.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable

from deepseek_runtime.engine.api import FinishReason
from deepseek_runtime.engine.request import Request, RequestStatus
from deepseek_runtime.engine.step_io import ScheduledChunk, SchedulerOutput
from deepseek_runtime.kv import KVCacheManager
from deepseek_runtime.kv.manager import CachedPrefix


class Scheduler:
    """Decides which tokens of which requests the next step computes."""

    def __init__(
        self,
        kv: KVCacheManager,
        *,
        max_num_seqs: int,
        max_num_batched_tokens: int,
        eos_token_ids: Iterable[int] = (),
        watermark_blocks: int = 0,
    ) -> None:
        if max_num_seqs < 1:
            raise ValueError("max_num_seqs must be >= 1")
        if max_num_batched_tokens < 1:
            raise ValueError("max_num_batched_tokens must be >= 1")
        self.kv = kv
        self.max_num_seqs = max_num_seqs
        self.max_num_batched_tokens = max_num_batched_tokens
        self.eos_token_ids = frozenset(eos_token_ids)
        self.watermark_blocks = watermark_blocks
        self.requests: dict[str, Request] = {}
        self.waiting: deque[Request] = deque()
        self.running: list[Request] = []
        self.num_preemptions = 0

    # -- queue management ------------------------------------------------------------
    def add(self, request: Request) -> None:
        if request.request_id in self.requests:
            raise ValueError(f"duplicate request id {request.request_id!r}")
        self.requests[request.request_id] = request
        self.waiting.append(request)

    def finish(self, request_id: str, reason: FinishReason) -> Request | None:
        """End a request now (abort, stop string, error) and free its blocks at once."""
        request = self.requests.pop(request_id, None)
        if request is None:
            return None
        if request.status is RequestStatus.RUNNING:
            self.running.remove(request)
        elif request.status is RequestStatus.WAITING:
            self.waiting.remove(request)
        self._retire(request, reason)
        return request

    def _retire(self, request: Request, reason: FinishReason) -> None:
        request.status = RequestStatus.FINISHED
        request.finish_reason = reason
        self.kv.free(request.request_id)

    def has_unfinished(self) -> bool:
        return bool(self.requests)

    # -- scheduling ------------------------------------------------------------------
    def schedule(self) -> SchedulerOutput:
        budget = self.max_num_batched_tokens
        chunks: list[ScheduledChunk] = []
        preempted = False
        i = 0
        while i < len(self.running) and budget > 0:
            request = self.running[i]
            n = min(request.num_tokens - request.num_computed_tokens, budget)
            table = self.kv.allocate_slots(request.request_id, request.num_computed_tokens + n)
            while table is None:
                victim = self.running.pop()
                self._preempt(victim)
                preempted = True
                if victim is request:
                    break
                table = self.kv.allocate_slots(request.request_id, request.num_computed_tokens + n)
            if table is None:
                break
            chunks.append(self._chunk(request, n, table))
            budget -= n
            i += 1

        while (
            not preempted and self.waiting and budget > 0 and len(self.running) < self.max_num_seqs
        ):
            request = self.waiting[0]
            prefix = (
                self.kv.find_cached_prefix(request.request_id, request.all_token_ids)
                if request.params.prompt_logprobs is None  # scoring needs every prompt row
                else CachedPrefix((), 0, request.num_tokens)
            )
            n = min(request.num_tokens - prefix.num_tokens, budget)
            needed = -(-(prefix.num_tokens + n) // self.kv.block_size) - len(prefix.blocks)
            if self.running and self.kv.num_free_blocks - needed < self.watermark_blocks:
                break
            table = self.kv.allocate_slots(request.request_id, prefix.num_tokens + n, prefix)
            if table is None:
                break
            self.waiting.popleft()
            request.status = RequestStatus.RUNNING
            if request.first_scheduled_time is None:
                request.first_scheduled_time = time.monotonic()
            request.num_computed_tokens = prefix.num_tokens
            self.running.append(request)
            chunks.append(self._chunk(request, n, table))
            budget -= n
        return SchedulerOutput(chunks)

    def _chunk(self, request: Request, n: int, table: list[int]) -> ScheduledChunk:
        start = request.num_computed_tokens
        return ScheduledChunk(
            request_id=request.request_id,
            token_ids=request.all_token_ids[start : start + n],
            start_pos=start,
            block_table=table,
            sample=start + n == request.num_tokens,
        )

    def _preempt(self, request: Request) -> None:
        self.kv.release_blocks(request.request_id)
        request.status = RequestStatus.WAITING
        request.num_computed_tokens = 0
        request.num_preemptions += 1
        self.num_preemptions += 1
        self.waiting.appendleft(request)

    # -- results ---------------------------------------------------------------------
    def update_from_output(self, output: SchedulerOutput, sampled: dict[str, int]) -> list[Request]:
        """Advance progress and append sampled tokens; finish on EOS, stop token ids,
        max_tokens or max_model_len. Returns the requests that got a new token."""
        updated: list[Request] = []
        finished = False
        for chunk in output.chunks:
            request = self.requests.get(chunk.request_id)
            if request is None or request.status is not RequestStatus.RUNNING:
                continue  # finished while the step ran
            request.num_computed_tokens += len(chunk.token_ids)
            self.kv.record_computed(
                request.request_id, request.all_token_ids, request.num_computed_tokens
            )
            token = sampled.get(chunk.request_id)
            if token is None:
                continue
            request.all_token_ids.append(token)
            updated.append(request)
            params = request.params
            if token in params.stop_token_ids or (
                not params.ignore_eos and token in self.eos_token_ids
            ):
                reason: FinishReason | None = FinishReason.STOP
            elif request.num_tokens >= request.max_total_tokens:
                reason = FinishReason.LENGTH
            else:
                reason = None
            if reason is not None:
                del self.requests[request.request_id]
                self._retire(request, reason)
                finished = True
        if finished:
            self.running = [r for r in self.running if r.status is RequestStatus.RUNNING]
        return updated

    # -- figures ---------------------------------------------------------------------
    @property
    def num_running(self) -> int:
        return len(self.running)

    @property
    def num_waiting(self) -> int:
        return len(self.waiting)
