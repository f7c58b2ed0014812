"""Token sampling from a batch of logits: penalties, temperature, top-k/top-p/min-p.

Called by :class:`deepseek_runtime.engine.llm_engine.LLMEngine` after the model step,
once per step, with one row per request that produces a token this step.

Reproducibility: a request with a ``seed`` owns a ``torch.Generator`` seeded with it
and draws exactly ``vocab`` exponential variates from it per generated token, so its
tokens do not depend on what else is in the batch (or on preemption). Sampling uses
``argmax(p / q)`` with ``q ~ Exp(1)``, which draws from ``p`` without normalizing it.
Requests without a seed share the sampler's generator.

Log-probabilities are those of the model's raw distribution (before penalties and
temperature), as OpenAI's ``logprobs`` report them.

Structured outputs (:mod:`deepseek_runtime.engine.structured`): rows whose request has a
grammar are masked first (only those rows; a batch mixes constrained and free rows),
and each sampled token then advances that request's grammar.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from deepseek_runtime.engine.api import GuidedDecoding, SamplingParams, TokenLogprob

if TYPE_CHECKING:
    from deepseek_runtime.engine.structured import StructuredOutputs


@dataclass(frozen=True, slots=True)
class SampleRow:
    """One row of the logits batch and what its request needs to sample from it."""

    request_id: str
    params: SamplingParams
    token_ids: list[int]  # prompt + output so far (penalties look at these)
    num_prompt_tokens: int


@dataclass(frozen=True, slots=True)
class SampleResult:
    token_id: int
    logprob: TokenLogprob | None = None
    grammar_done: bool = False  # the request's grammar terminated with this token


def _is_plain_greedy(params: SamplingParams) -> bool:
    return (
        params.temperature == 0
        and params.logprobs is None
        and params.repetition_penalty == 1
        and params.presence_penalty == 0
        and params.frequency_penalty == 0
    )


def apply_penalties(logits: torch.Tensor, row: SampleRow) -> torch.Tensor:
    """Repetition (prompt + output), presence and frequency (output only) penalties."""
    p = row.params
    if p.repetition_penalty != 1 and row.token_ids:
        seen = torch.tensor(sorted(set(row.token_ids)), dtype=torch.long)
        vals = logits[seen]
        logits[seen] = torch.where(
            vals > 0, vals / p.repetition_penalty, vals * p.repetition_penalty
        )
    output = row.token_ids[row.num_prompt_tokens :]
    if (p.presence_penalty != 0 or p.frequency_penalty != 0) and output:
        ids, counts = torch.unique(torch.tensor(output, dtype=torch.long), return_counts=True)
        logits[ids] -= p.frequency_penalty * counts.to(logits.dtype) + p.presence_penalty
    return logits


def filter_probs(logits: torch.Tensor, params: SamplingParams) -> torch.Tensor:
    """Probabilities after temperature, top-k, top-p and min-p (unnormalized after
    filtering: zeros where a token was removed). ``temperature`` must be > 0."""
    x = logits / params.temperature
    vocab = x.shape[-1]
    if 0 < params.top_k < vocab:
        kth = torch.topk(x, params.top_k).values[-1]
        x = x.masked_fill(x < kth, float("-inf"))
    probs = torch.softmax(x, dim=-1)
    if params.top_p < 1:
        sorted_probs, order = torch.sort(probs, descending=True)
        before = torch.cumsum(sorted_probs, dim=-1) - sorted_probs
        drop = before > params.top_p  # keeps the smallest set whose mass reaches top_p
        probs = probs.scatter(0, order[drop], 0.0)
    if params.min_p > 0:
        probs = probs.masked_fill(probs < params.min_p * probs.max(), 0.0)
    return probs


class Sampler:
    """Samples one token per row; owns the per-request seeded generators."""

    def __init__(
        self, seed: int | None = None, structured: StructuredOutputs | None = None
    ) -> None:
        self.structured = structured
        self._shared = torch.Generator()
        if seed is None:
            self._shared.seed()
        else:
            self._shared.manual_seed(seed)
        self._generators: dict[str, torch.Generator] = {}

    def add_request(
        self, request_id: str, seed: int | None, guided: GuidedDecoding | None = None
    ) -> None:
        if guided is not None:
            if self.structured is None:
                raise ValueError("structured outputs need a StructuredOutputs")
            self.structured.add_request(request_id, guided)
        if seed is not None:
            gen = torch.Generator()
            gen.manual_seed(seed)
            self._generators[request_id] = gen

    def remove_request(self, request_id: str) -> None:
        self._generators.pop(request_id, None)
        if self.structured is not None:
            self.structured.remove_request(request_id)

    def sample(self, logits: torch.Tensor, rows: Sequence[SampleRow]) -> list[SampleResult]:
        """``logits`` is ``[len(rows), vocab]``; returns one result per row, in order."""
        if len(rows) != logits.shape[0]:
            raise ValueError(f"{len(rows)} rows for {logits.shape[0]} logits rows")
        if not rows:
            return []
        raw = logits
        so = self.structured
        ids = [r.request_id for r in rows]
        constrained = so is not None and any(so.is_constrained(rid) for rid in ids)
        if so is not None and constrained:
            logits = logits.clone()
            so.mask(logits, ids)
        if all(_is_plain_greedy(r.params) for r in rows):
            results = [SampleResult(t) for t in logits.argmax(dim=-1).tolist()]
        else:
            logits = logits.detach().float().cpu()
            raw = raw.detach().float().cpu() if constrained else logits
            results = [self._sample_row(logits[i], raw[i], row) for i, row in enumerate(rows)]
        if so is None or not constrained:
            return results
        return [
            SampleResult(r.token_id, r.logprob, so.accept(rid, r.token_id))
            if so.is_constrained(rid)
            else r
            for rid, r in zip(ids, results, strict=True)
        ]

    def _sample_row(self, logits: torch.Tensor, raw: torch.Tensor, row: SampleRow) -> SampleResult:
        p = row.params
        x = apply_penalties(logits.clone(), row)
        if p.temperature == 0:
            token = int(x.argmax())
        else:
            probs = filter_probs(x, p)
            gen = self._generators.get(row.request_id, self._shared)
            q = torch.empty_like(probs).exponential_(generator=gen)
            token = int((probs / q).argmax())
        if p.logprobs is None:
            return SampleResult(token)
        lp = torch.log_softmax(raw, dim=-1)
        top: tuple[tuple[int, float], ...] = ()
        if p.logprobs > 0:
            vals, ids = torch.topk(lp, p.logprobs)
            top = tuple(zip(ids.tolist(), vals.tolist(), strict=True))
        return SampleResult(token, TokenLogprob(token, float(lp[token]), top))
