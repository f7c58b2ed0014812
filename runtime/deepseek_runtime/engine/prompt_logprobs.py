"""Prompt logprobs (vLLM's ``prompt_logprobs``): how likely the model found each prompt token.

Scoring clients (``echo`` with ``logprobs`` on ``/v1/completions``, lm-eval's
loglikelihood) need, for every prompt position ``p >= 1``, the log-probability of token
``p`` given tokens ``0 .. p-1``; position 0 has none (``None``). Those come from the logits
of *every* row of the request's prefill chunks, which the engine asks the runner for only
for the chunks that need them (:meth:`PromptLogprobs.wanted`). A chunked prefill fills the
list chunk by chunk; a recomputation after preemption finds the positions already done
and skips them. Such requests bypass the prefix cache (the scheduler checks
``params.prompt_logprobs``): cached positions would have no logits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from deepseek_runtime.engine.api import TokenLogprob
from deepseek_runtime.engine.request import Request
from deepseek_runtime.engine.step_io import ScheduledChunk


class PromptLogprobs:
    """Per-request lists ``[None, lp(token 1), ...]`` filled while the prompt is computed."""

    def __init__(self) -> None:
        self._lists: dict[str, list[TokenLogprob | None]] = {}

    def add_request(self, request: Request) -> None:
        if request.params.prompt_logprobs is not None:
            self._lists[request.request_id] = [None]

    def wanted(
        self, chunks: Sequence[ScheduledChunk], requests: Mapping[str, Request]
    ) -> list[int]:
        """Indices of the chunks whose every row's logits this step must return."""
        if not self._lists:
            return []
        out = []
        for k, chunk in enumerate(chunks):
            done = self._lists.get(chunk.request_id)
            if done is None:
                continue
            need_upto = requests[chunk.request_id].num_prompt_tokens  # exclusive target
            if len(done) < need_upto and chunk.start_pos + len(chunk.token_ids) >= len(done):
                out.append(k)
        return out

    def record(self, chunk: ScheduledChunk, request: Request, logits: torch.Tensor) -> None:
        """Logprobs of the prompt tokens that ``logits`` (one row per chunk token) predict."""
        done = self._lists[request.request_id]
        k = request.params.prompt_logprobs or 0
        first = len(done) - 1 - chunk.start_pos  # row predicting target len(done)
        last = min(len(chunk.token_ids), request.num_prompt_tokens - 1 - chunk.start_pos)
        if first < 0 or first >= last:
            return
        rows = torch.log_softmax(logits[first:last].float(), dim=-1).cpu()
        targets = request.all_token_ids[chunk.start_pos + first + 1 : chunk.start_pos + last + 1]
        picked = rows.gather(1, torch.tensor(targets, dtype=torch.long).unsqueeze(1))
        top_vals, top_ids = torch.topk(rows, k) if k > 0 else (None, None)
        for i, (token, lp) in enumerate(zip(targets, picked.squeeze(1).tolist(), strict=True)):
            top: tuple[tuple[int, float], ...] = ()
            if top_vals is not None and top_ids is not None:
                top = tuple(zip(top_ids[i].tolist(), top_vals[i].tolist(), strict=True))
            done.append(TokenLogprob(token, float(lp), top))

    def pop(self, request_id: str) -> list[TokenLogprob | None] | None:
        return self._lists.pop(request_id, None)
