"""Sampler properties: greedy, seeds, top-k / top-p / min-p masks, penalties, logprobs."""

from __future__ import annotations

import pytest
import torch

from deepseek_runtime.engine.api import SamplingParams
from deepseek_runtime.engine.sampler import Sampler, SampleRow, apply_penalties, filter_probs

pytestmark = pytest.mark.unit

V = 32


def row(
    rid: str, params: SamplingParams, tokens: list[int] | None = None, prompt: int = 0
) -> SampleRow:
    return SampleRow(rid, params, tokens or [], prompt)


def test_greedy_is_argmax() -> None:
    logits = torch.randn(3, V, generator=torch.Generator().manual_seed(0))
    p = SamplingParams(temperature=0)
    out = Sampler(0).sample(logits, [row(str(i), p) for i in range(3)])
    assert [r.token_id for r in out] == logits.argmax(-1).tolist()


def test_seed_is_reproducible_and_independent_of_the_batch() -> None:
    gen = torch.Generator().manual_seed(1)
    steps = [torch.randn(4, V, generator=gen) for _ in range(6)]
    seeded = SamplingParams(temperature=1.0, seed=42)
    other = SamplingParams(temperature=1.0)

    def run(batch_rows: list[int], rid_of_seeded: int) -> list[int]:
        sampler = Sampler(seed=7)
        for i in batch_rows:
            sampler.add_request(str(i), 42 if i == rid_of_seeded else None)
        got = []
        for logits in steps:
            rows = [row(str(i), seeded if i == rid_of_seeded else other) for i in batch_rows]
            res = sampler.sample(logits[batch_rows], rows)
            got.append(res[batch_rows.index(rid_of_seeded)].token_id)
        return got

    # Same logits row for the seeded request; different companions and positions.
    alone = run([2], 2)
    assert run([0, 1, 2, 3], 2) == alone
    assert run([2, 3], 2) == alone
    assert len(set(alone)) > 1  # it really samples


def test_sampling_follows_the_distribution() -> None:
    logits = torch.log(torch.tensor([[0.7, 0.2, 0.1]]))
    sampler = Sampler(0)
    p = SamplingParams(temperature=1.0)
    counts = [0, 0, 0]
    for _ in range(3000):
        counts[sampler.sample(logits, [row("x", p)])[0].token_id] += 1
    assert counts[0] / 3000 == pytest.approx(0.7, abs=0.04)
    assert counts[2] / 3000 == pytest.approx(0.1, abs=0.03)


def test_top_k_top_p_min_p_masks() -> None:
    logits = torch.log(torch.tensor([0.05, 0.4, 0.3, 0.15, 0.1]))
    probs = filter_probs(logits.clone(), SamplingParams(temperature=1.0, top_k=2))
    assert (probs > 0).tolist() == [False, True, True, False, False]
    probs = filter_probs(logits.clone(), SamplingParams(temperature=1.0, top_p=0.7))
    assert (probs > 0).tolist() == [False, True, True, False, False]  # 0.4 + 0.3 >= 0.7
    probs = filter_probs(logits.clone(), SamplingParams(temperature=1.0, top_p=0.71))
    assert (probs > 0).tolist() == [False, True, True, True, False]
    probs = filter_probs(logits.clone(), SamplingParams(temperature=1.0, min_p=0.3))
    assert (probs > 0).tolist() == [False, True, True, True, False]  # >= 0.12
    # The most likely token always survives.
    probs = filter_probs(logits.clone(), SamplingParams(temperature=1.0, top_p=0.01))
    assert (probs > 0).tolist() == [False, True, False, False, False]


def test_penalties() -> None:
    logits = torch.tensor([2.0, -2.0, 1.0, 1.0])
    rep = apply_penalties(
        logits.clone(), row("r", SamplingParams(repetition_penalty=2.0), [0, 1], 2)
    )
    assert rep.tolist() == [1.0, -4.0, 1.0, 1.0]
    pen = apply_penalties(
        logits.clone(),
        row("p", SamplingParams(presence_penalty=0.5, frequency_penalty=0.25), [3, 2, 2, 2, 3], 1),
    )
    # prompt token 3 is not counted; output: 2 x3, 3 x1
    assert pen.tolist() == pytest.approx([2.0, -2.0, 1.0 - 0.75 - 0.5, 1.0 - 0.25 - 0.5])
    greedy = SamplingParams(temperature=0, repetition_penalty=10.0)
    out = Sampler(0).sample(logits.unsqueeze(0), [row("g", greedy, [0], 1)])
    assert out[0].token_id == 2


def test_logprobs_report_raw_distribution_and_top_alternatives() -> None:
    logits = torch.tensor([[0.0, 1.0, 2.0, 3.0]])
    out = Sampler(0).sample(logits, [row("l", SamplingParams(temperature=0, logprobs=2))])
    lp = torch.log_softmax(logits[0], -1)
    assert out[0].token_id == 3
    assert out[0].logprob is not None
    assert out[0].logprob.logprob == pytest.approx(float(lp[3]))
    assert [t for t, _ in out[0].logprob.top] == [3, 2]
