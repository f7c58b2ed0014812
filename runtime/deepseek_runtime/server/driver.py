"""Runs a prepared request to its answer and owns what must happen exactly once.

Every OpenAI path (completion or chat, whole or streamed) goes through here::

    handle   guards (ServerState.begin), the ``model`` name; an APIError from any
             later step is audited
    answer   whole or stream, as the plan says
    start    rate limit (admit), then Generation.start: a refusal is still a 400/429,
             since nothing has been sent yet
    whole    collect every choice, watching the client (gone: 499); a choice the engine
             failed (finish reason ``error``) makes the answer a 503, not a failed 200
    stream   SSE chunks, the usage chunk if asked for, then [DONE]
    owned    whole and stream run inside it; its finally, once: Generation.close
             (aborts what still runs), count the tokens, write the audit line

A client that goes away cancels the stream (Starlette) or is seen by the watcher, and
the ``finally`` of :meth:`GenerationDriver.owned` aborts its sequences, so KV blocks
return at once. Used by ``server.openai_routes``; ``server.v2_common`` uses
:func:`start_or_refuse`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from ..engine.api import EngineError, FinishReason
from .errors import APIError
from .generation import Generation
from .preparation import GenerationPlan, engine_refusal
from .responses import SSE_DONE, ChoiceBuffer, StreamRenderer, WholeRenderer, sse
from .state import LoadedModel, RequestContext, ServerState

CLIENT_CLOSED = 499  # nginx's status for a request the client gave up on
DISCONNECT_POLL_S = 0.5  # how often a non-streamed request checks its client
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}

Work = Callable[[LoadedModel, RequestContext], Awaitable[Response]]


class ClientGone(Exception):  # noqa: N818 (reads as a state)
    """The client closed the connection before a non-streamed answer was ready."""


@dataclass(slots=True)
class Outcome:
    """The status the audit line records; 499 until the answer is complete."""

    status: int = CLIENT_CLOSED


async def start_or_refuse(gen: Generation, retry_after: int) -> None:
    """Start a generation; when the engine refuses it, close it and raise the HTTP error.

    Starting before any response byte is sent is what lets a refusal still become a
    400 or a 429 (with Retry-After) on streamed requests too.
    """
    try:
        await gen.start()
    except EngineError as exc:
        await gen.close()
        raise engine_refusal(exc, retry_after) from None
    except BaseException:
        await gen.close()
        raise


async def _collect(gen: Generation, choices: int) -> list[ChoiceBuffer]:
    bufs = [ChoiceBuffer() for _ in range(choices)]
    async for upd in gen.events():
        bufs[upd.index].add(upd)
    return bufs


async def _collect_watching(request: Request, gen: Generation, choices: int) -> list[ChoiceBuffer]:
    task = asyncio.ensure_future(_collect(gen, choices))
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=DISCONNECT_POLL_S)
            if done:
                return task.result()
            if await request.is_disconnected():
                raise ClientGone
    finally:
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def _overall_reason(bufs: list[ChoiceBuffer]) -> str | None:
    reasons = {b.finish_reason for b in bufs}
    return reasons.pop() if len(reasons) == 1 else "mixed"


class GenerationDriver:
    """Starts, answers and cleans up the generations of one server's requests."""

    def __init__(self, state: ServerState) -> None:
        self._state = state

    async def handle(
        self, request: Request, endpoint: str, model_name: str, work: Work
    ) -> Response:
        """Run ``work`` after the guards and the ``model`` check; APIErrors are audited."""
        model, ctx = self._state.begin(request, endpoint)
        try:
            self._state.check_model_name(model_name)
            return await work(model, ctx)
        except APIError as exc:
            self._state.finish(ctx, exc.status)
            raise

    async def start(
        self, ctx: RequestContext, model: LoadedModel, plan: GenerationPlan
    ) -> Generation:
        """Charge the rate limit, then start every sequence (engine refusals → 400/429)."""
        state = self._state
        ctx.prompt_tokens = plan.prompt_tokens
        state.admit(ctx, ctx.prompt_tokens, plan.params.max_tokens * plan.choices)
        gen = Generation(
            model.engine,
            state.metrics,
            state.content_filter,
            ctx.request_id,
            plan.prompts,
            plan.params,
            plan.n,
        )
        await start_or_refuse(gen, state.config.retry_after_seconds)
        return gen

    @asynccontextmanager
    async def owned(self, ctx: RequestContext, gen: Generation) -> AsyncIterator[Outcome]:
        """The one cleanup: close ``gen`` (abort what runs), count its tokens, audit."""
        outcome = Outcome()
        try:
            yield outcome
        finally:
            await gen.close()
            ctx.completion_tokens = gen.completion_tokens
            self._state.finish(ctx, outcome.status)

    async def answer(  # noqa: PLR0917
        self,
        request: Request,
        ctx: RequestContext,
        model: LoadedModel,
        plan: GenerationPlan,
        whole: WholeRenderer,
        stream: StreamRenderer,
    ) -> Response:
        """Start ``plan`` and answer with ``stream``'s chunks if it streams, else ``whole``."""
        if plan.stream:
            return await self._stream(ctx, model, plan, stream)
        return await self._whole(request, ctx, model, plan, whole)

    async def _whole(
        self,
        request: Request,
        ctx: RequestContext,
        model: LoadedModel,
        plan: GenerationPlan,
        render: WholeRenderer,
    ) -> Response:
        """One JSON answer once every choice has finished; 499 if the client left first."""
        gen = await self.start(ctx, model, plan)
        async with self.owned(ctx, gen) as outcome:
            try:
                bufs = await _collect_watching(request, gen, plan.choices)
            except ClientGone:
                return Response(status_code=CLIENT_CLOSED)
            ctx.finish_reason = _overall_reason(bufs)
            if any(b.finish_reason == FinishReason.ERROR.value for b in bufs):
                # nothing is sent yet, so say so with a status, not a 200 that failed
                outcome.status = 503
                raise self._engine_failed()
            outcome.status = 200
        return JSONResponse(render.body(bufs, gen.prompt_tokens, gen.completion_tokens))

    def _engine_failed(self) -> APIError:
        return APIError(
            503,
            "the engine failed while generating this answer (e.g. a worker of its parallel "
            "group stopped); retry",
            code="engine_error",
            headers={"Retry-After": str(self._state.config.retry_after_seconds)},
        )

    async def _stream(
        self, ctx: RequestContext, model: LoadedModel, plan: GenerationPlan, render: StreamRenderer
    ) -> StreamingResponse:
        """SSE: the renderer's chunks, the usage chunk if asked for, then ``[DONE]``.

        A stream whose first update is already the engine's failure is a 503 instead
        (the status line has not gone out yet); later failures are error events.
        """
        gen = await self.start(ctx, model, plan)
        if gen.failed_at_start:
            await gen.close()
            raise self._engine_failed()

        async def events() -> AsyncIterator[bytes]:
            async with self.owned(ctx, gen) as outcome:
                async for upd in gen.events():
                    for chunk in render.chunks(upd):
                        yield sse(chunk)
                    if upd.finished:
                        ctx.finish_reason = upd.finish_reason
                if plan.include_usage:
                    now = int(time.time())
                    yield sse(render.usage_chunk(now, gen.prompt_tokens, gen.completion_tokens))
                yield SSE_DONE
                outcome.status = 200

        return StreamingResponse(events(), media_type="text/event-stream", headers=SSE_HEADERS)
