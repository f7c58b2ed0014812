"""Greedy completions read through the ``openai`` client, and comparing two layouts' runs.

Shared by the parallel serving tests (``test_parallel_layouts_serve``,
``test_multinode_serve``): the same two prompts, 8 greedy tokens with their logprobs.
"""

from __future__ import annotations

import openai
from server_harness import ServerProcess

LOGPROB_TOL = 1e-4
PROMPTS = [[5, 6, 7, 8, 9], [11, 3, 200, 17]]
ARGS = ["--num-blocks", "64", "--dtype", "float32", "--device", "cpu"]

Greedy = list[tuple[list[str], list[float]]]


def greedy(proc: ServerProcess, model: str) -> Greedy:
    """Tokens and logprobs of each prompt's greedy completion, in prompt order."""
    client = openai.OpenAI(base_url=proc.url + "/v1", api_key="none", timeout=120)
    out = client.completions.create(
        model=model, prompt=PROMPTS, max_tokens=8, temperature=0, logprobs=1
    )
    rows = sorted(out.choices, key=lambda c: c.index)
    return [
        (list(c.logprobs.tokens or []), list(c.logprobs.token_logprobs or []))
        for c in rows
        if c.logprobs is not None
    ]


def assert_same_greedy(want: Greedy, got: Greedy) -> None:
    """Identical tokens; logprobs within :data:`LOGPROB_TOL`."""
    assert [tokens for tokens, _ in got] == [tokens for tokens, _ in want]
    for (_, a), (_, b) in zip(want, got, strict=True):
        assert max(abs(x - y) for x, y in zip(a, b, strict=True)) <= LOGPROB_TOL
