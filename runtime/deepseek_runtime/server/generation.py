"""Drives the ``n`` engine sequences of one API request and merges their streams.

Admission errors (queue full, prompt refused) must become an HTTP status before any byte
of the response is sent, so :meth:`Generation.start` submits every sequence and waits for
each one's first update; :meth:`Generation.events` then yields ``(index, update)`` pairs
in arrival order. Outputs are checked against the content filter as they arrive; a
sequence that breaks it is aborted and ends with ``finish_reason="content_filter"``.
:meth:`Generation.close` (always called, also when the client disconnects and the
consumer is cancelled) aborts whatever is still running so KV blocks return at once.
Used by ``server.driver`` (the OpenAI routes) and ``server.v2_common`` (the v2 faces).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass

from ..engine.api import AsyncEngine, FinishReason, RequestOutput, SamplingParams, TokenLogprob
from .content_filter import ContentFilter
from .metrics import RequestTimer, ServerMetrics

CONTENT_FILTER = "content_filter"


@dataclass(slots=True)
class Update:
    """One delta of one choice, after filtering."""

    index: int
    text: str
    token_ids: list[int]
    logprobs: list[TokenLogprob]
    finished: bool
    finish_reason: str | None  # "stop", "length", "abort", "error" or "content_filter"
    completion_tokens: int
    error: str | None = None
    prompt_logprobs: list[TokenLogprob | None] | None = None  # first update, when asked


@dataclass(slots=True)
class _Seq:
    request_id: str
    prompt_ids: list[int]
    params: SamplingParams
    timer: RequestTimer
    iterator: AsyncIterator[RequestOutput] | None = None
    first: RequestOutput | None = None
    text: str = ""
    done: bool = False
    completion_tokens: int = 0
    finish_reason: str | None = None
    queue_time: float | None = None


class Generation:
    """The sequences of one request. Use ``async with`` or call :meth:`close`."""

    def __init__(  # noqa: PLR0917
        self,
        engine: AsyncEngine,
        metrics: ServerMetrics,
        content_filter: ContentFilter | None,
        request_id: str,
        prompts: list[list[int]],
        params: SamplingParams,
        n: int,
    ) -> None:
        """Choice ``p * n + j`` is the ``j``-th sample of prompt ``p``."""
        self._engine = engine
        self._filter = content_filter
        self.prompt_tokens = sum(len(p) for p in prompts)
        self._seqs: list[_Seq] = []
        single = len(prompts) * n == 1
        for p_index, prompt_ids in enumerate(prompts):
            for j in range(n):
                p = params
                if n > 1 and params.seed is not None:
                    p = dataclasses.replace(params, seed=(params.seed + j) % (2**63))
                rid = request_id if single else f"{request_id}-{p_index * n + j}"
                self._seqs.append(_Seq(rid, prompt_ids, p, metrics.timer(len(prompt_ids))))

    async def __aenter__(self) -> Generation:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Wait for each sequence's first update; re-raises the engine's refusal."""

        async def prime(seq: _Seq) -> None:
            seq.iterator = aiter(self._engine.generate(seq.request_id, seq.prompt_ids, seq.params))
            seq.first = await anext(seq.iterator)

        results: list[BaseException | None] = []
        if len(self._seqs) == 1:
            try:
                await prime(self._seqs[0])
            except Exception as exc:
                results.append(exc)
        else:
            results = await asyncio.gather(*(prime(s) for s in self._seqs), return_exceptions=True)
        failure = next((r for r in results if isinstance(r, BaseException)), None)
        if failure is not None:
            # refused: not a finished request for the metrics; free whatever was admitted
            for seq in self._seqs:
                if not seq.done:
                    seq.done = True
                    await self._abort(seq)
            raise failure

    def _filter_update(self, index: int, seq: _Seq, out: RequestOutput) -> Update:
        seq.timer.on_tokens(len(out.new_token_ids))
        if out.queue_time is not None:  # reported by engines that know it
            seq.queue_time = out.queue_time
        seq.completion_tokens = out.completion_tokens
        text = out.text
        reason = out.finish_reason.value if out.finish_reason is not None else None
        finished = out.finished
        if self._filter is not None and text and self._filter.check_output(seq.text + text):
            text, finished, reason = "", True, CONTENT_FILTER
        seq.text += text
        if finished:
            seq.done = True
            seq.finish_reason = reason
            seq.timer.finish(reason, seq.completion_tokens, seq.queue_time)
        return Update(
            index,
            text,
            list(out.new_token_ids),
            list(out.logprobs),
            finished,
            reason,
            seq.completion_tokens,
            out.error,
            out.prompt_logprobs,
        )

    async def _iterate(self, index: int) -> AsyncIterator[Update]:
        seq = self._seqs[index]
        if seq.first is not None:
            first, seq.first = seq.first, None
            upd = self._filter_update(index, seq, first)
            yield upd
            if upd.finished:
                return
        if seq.iterator is None:
            return
        async for out in seq.iterator:
            upd = self._filter_update(index, seq, out)
            yield upd
            if upd.finished:
                return

    async def events(self) -> AsyncIterator[Update]:
        """Every update of every choice, in arrival order; ends when all have finished."""
        if len(self._seqs) == 1:
            async for upd in self._iterate(0):
                yield upd
                if upd.finished and upd.finish_reason == CONTENT_FILTER:
                    await self._abort(self._seqs[0])
            return
        queue: asyncio.Queue[Update | BaseException | None] = asyncio.Queue()

        async def pump(i: int) -> None:
            try:
                async for upd in self._iterate(i):
                    await queue.put(upd)
                    if upd.finished and upd.finish_reason == CONTENT_FILTER:
                        await self._abort(self._seqs[i])
            except Exception as exc:
                await queue.put(exc)
            finally:
                await queue.put(None)

        tasks = [asyncio.create_task(pump(i)) for i in range(len(self._seqs))]
        try:
            remaining = len(tasks)
            while remaining:
                item = await queue.get()
                if item is None:
                    remaining -= 1
                elif isinstance(item, BaseException):
                    raise item
                else:
                    yield item
        finally:
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t

    async def _abort(self, seq: _Seq) -> None:
        if seq.iterator is None:
            return
        with contextlib.suppress(Exception):
            await self._engine.abort(seq.request_id)
        aclose = getattr(seq.iterator, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(BaseException):
                await aclose()

    async def close(self) -> None:
        """Abort every unfinished sequence (idempotent)."""
        for seq in self._seqs:
            if not seq.done:
                seq.done = True
                seq.timer.finish(FinishReason.ABORT, seq.completion_tokens)
                await self._abort(seq)

    @property
    def failed_at_start(self) -> bool:
        """A sequence's first update is already the engine's failure (nothing streamed yet)."""
        return any(
            s.first is not None and s.first.finish_reason is FinishReason.ERROR for s in self._seqs
        )

    @property
    def completion_tokens(self) -> int:
        return sum(s.completion_tokens for s in self._seqs)
