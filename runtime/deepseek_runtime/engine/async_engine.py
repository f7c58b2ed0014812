"""``NativeAsyncEngine``: the asyncio face of :class:`LLMEngine` for the HTTP server.

Called by ``deepseek_runtime.server`` (through the :class:`AsyncEngine` seam). One
background task drives the engine; each ``step()`` runs in a single worker thread so
the event loop stays responsive. Engine state is only touched by the step thread or by
the event loop while no step runs::

    generate() ─┐                      ┌─▶ request A's asyncio.Queue ─▶ async for ...
    abort()  ───┼─▶ [pending ops] ─▶ loop task ── run_in_executor(step) ─┤
                │  (applied between steps)      └─▶ request B's queue  ─▶ async for ...
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from deepseek_runtime.engine.api import (
    AsyncEngine,
    EngineError,
    EngineStats,
    FinishReason,
    QueueFullError,
    RequestOutput,
    SamplingParams,
)
from deepseek_runtime.engine.llm_engine import LLMEngine

log = logging.getLogger(__name__)


class NativeAsyncEngine(AsyncEngine):
    """Our continuous-batching engine behind the :class:`AsyncEngine` interface.

    ``tokenizer`` is whatever the engine detokenizes with, kept for the caller that built
    the engine (``backends.native.build_async_engine`` loads it from the checkpoint).
    """

    def __init__(self, engine: LLMEngine, *, tokenizer: Any | None = None) -> None:
        self.engine = engine
        self.tokenizer = tokenizer
        self._streams: dict[str, asyncio.Queue[RequestOutput]] = {}
        self._pending: list[Callable[[], None]] = []
        self._num_pending_adds = 0
        self._stepping = False
        self._last_stats = engine.stats()
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._closed = False

    # -- lifecycle -------------------------------------------------------------------
    async def start(self) -> None:
        if self._task is not None and not self._task.done():
            return
        self._closed = False
        self._wakeup = asyncio.Event()
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="engine-step")
        self._task = asyncio.create_task(self._run(), name="engine-loop")

    async def shutdown(self) -> None:
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._apply_pending()
        for request_id in list(self._streams):
            self._finish_now(request_id, FinishReason.ABORT, "engine shut down")
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    # -- requests --------------------------------------------------------------------
    def generate(
        self, request_id: str, prompt_token_ids: list[int], params: SamplingParams
    ) -> AsyncIterator[RequestOutput]:
        """Validate and queue a request (raising EngineError / QueueFullError at once),
        then stream its deltas. Closing or cancelling the iterator aborts the request.

        This is the one validation of the request: it is queued between steps without
        another scan, and the model runner trusts what the scheduler hands it."""
        if self._closed or self._task is None:
            raise EngineError("the engine is not running")
        if request_id in self._streams:
            raise EngineError(f"request id {request_id!r} is already in use")
        prompt = list(prompt_token_ids)
        self.engine.validate(request_id, prompt, params)
        if (
            self.engine.scheduler.num_waiting + self._num_pending_adds
            >= self.engine.config.max_waiting
        ):
            raise QueueFullError(
                f"too many queued requests (max_waiting={self.engine.config.max_waiting}); "
                "retry later"
            )
        queue: asyncio.Queue[RequestOutput] = asyncio.Queue()
        self._streams[request_id] = queue
        self._num_pending_adds += 1

        def add() -> None:
            self._num_pending_adds -= 1
            if request_id not in self._streams:
                return  # aborted before it was added
            # Validated above; the id is still unique, since every request in the engine
            # holds its stream until it finishes.
            self.engine.add_validated_request(request_id, prompt, params)

        self._submit(add)
        return self._stream(request_id, queue)

    async def _stream(
        self, request_id: str, queue: asyncio.Queue[RequestOutput]
    ) -> AsyncIterator[RequestOutput]:
        finished = False
        try:
            while True:
                out = await queue.get()
                # Coalesce deltas that piled up while the consumer was busy.
                while not out.finished and not queue.empty():
                    out = _merge(out, queue.get_nowait())
                finished = out.finished
                yield out
                if finished:
                    return
        finally:
            if not finished:
                self._abort_soon(request_id)

    async def abort(self, request_id: str) -> None:
        self._abort_soon(request_id)

    def _abort_soon(self, request_id: str) -> None:
        if request_id not in self._streams:
            return
        self._submit(lambda: self._finish_now(request_id, FinishReason.ABORT, None))

    def _finish_now(self, request_id: str, reason: FinishReason, error: str | None) -> None:
        queue = self._streams.pop(request_id, None)
        out = self.engine.abort_request(request_id, reason, error)
        if queue is not None:
            queue.put_nowait(out or RequestOutput(request_id, [], "", True, reason, error=error))

    def _submit(self, op: Callable[[], None]) -> None:
        """Run ``op`` now if no step is running (frees blocks at once), else after it."""
        if self._stepping:
            self._pending.append(op)
        else:
            op()
        if self._wakeup is not None:
            self._wakeup.set()

    def _apply_pending(self) -> None:
        ops, self._pending = self._pending, []
        for op in ops:
            op()

    # -- the loop --------------------------------------------------------------------
    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        wakeup, executor = self._wakeup, self._executor
        if wakeup is None or executor is None:
            raise RuntimeError("start() sets up the loop")
        while True:
            self._apply_pending()
            if not self.engine.has_unfinished_requests():
                wakeup.clear()
                await wakeup.wait()
                continue
            self._last_stats = self.engine.stats()
            self._stepping = True
            try:
                outputs = await loop.run_in_executor(executor, self.engine.step)
            except Exception as exc:
                log.exception("engine step failed")
                outputs = []
                for request_id in list(self._streams):
                    self._finish_now(request_id, FinishReason.ERROR, f"engine step failed: {exc}")
            finally:
                self._stepping = False
            for out in outputs:
                queue = self._streams.get(out.request_id)
                if queue is None:
                    continue
                if out.finished:
                    del self._streams[out.request_id]
                queue.put_nowait(out)
            await asyncio.sleep(0)

    # -- figures ---------------------------------------------------------------------
    def stats(self) -> EngineStats:
        # During a step the engine's state belongs to the step thread: report the
        # snapshot taken after the previous step instead of reading it concurrently.
        s = self._last_stats if self._stepping else self.engine.stats()
        if self._num_pending_adds:
            return dataclasses.replace(s, num_waiting=s.num_waiting + self._num_pending_adds)
        return s

    @property
    def max_model_len(self) -> int:
        return self.engine.config.max_model_len


def _merge(a: RequestOutput, b: RequestOutput) -> RequestOutput:
    """One delta for ``a`` followed by ``b``: the deltas (token ids, text, logprobs) join;
    every other field is ``b``'s, being cumulative or final, except that a queue time
    already known from ``a`` is kept."""
    return dataclasses.replace(
        b,
        new_token_ids=a.new_token_ids + b.new_token_ids,
        text=a.text + b.text,
        logprobs=a.logprobs + b.logprobs,
        queue_time=a.queue_time if b.queue_time is None else b.queue_time,
    )
