"""Prompt logprobs over the real tiny model: every prompt row, chunked or not, cached or not.

Reference: the log-softmax of the last-row logits of each prompt prefix, each computed by
a separate plain request (``logprobs=20`` reports the whole distribution's top entries and
the sampled token; here the reference reads the runner's logits directly).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from deepseek_runtime.backends.native import NativeEngineOptions, build_engine
from deepseek_runtime.checkpoint.make_tiny import make_tiny_checkpoint
from deepseek_runtime.engine import LLMEngine, SamplingParams
from deepseek_runtime.engine.api import RequestOutput

pytestmark = [pytest.mark.unit, pytest.mark.usefixtures("one_torch_thread")]

PROMPT = [0, *range(30, 70)]  # 41 tokens: several blocks, several chunks


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(make_tiny_checkpoint(tmp_path_factory.mktemp("tiny-v3"), "v3", seed=3))


def engine(model_dir: Path, **kw: Any) -> LLMEngine:
    options = NativeEngineOptions(
        model_dir=model_dir, dtype="float32", device="cpu", block_size=4, **kw
    )
    return build_engine(options)[0]


def reference(eng: LLMEngine) -> list[float]:
    """log p(token p | tokens < p) for p >= 1, from last-row logits of each prefix."""
    out = []
    for p in range(1, len(PROMPT)):
        eng.add_request(f"ref-{p}", PROMPT[:p], SamplingParams(max_tokens=1, temperature=0))
        sched = eng.scheduler.schedule()
        logits = eng.runner.execute(sched.chunks)
        out.append(float(torch.log_softmax(logits[0], -1)[PROMPT[p]]))
        eng.abort_request(f"ref-{p}")
    return out


def first_output(eng: LLMEngine, rid: str, params: SamplingParams) -> RequestOutput:
    eng.add_request(rid, PROMPT, params)
    first = None
    while eng.has_unfinished_requests():
        for out in eng.step():
            if out.request_id == rid and first is None:
                first = out
    assert first is not None
    return first


@pytest.mark.parametrize("batched_tokens", [2048, 7])
def test_prompt_logprobs_match_per_prefix_logits(model_dir: Path, batched_tokens: int) -> None:
    eng = engine(model_dir, max_num_batched_tokens=batched_tokens, enable_prefix_caching=True)
    ref = reference(engine(model_dir, enable_prefix_caching=False))
    # warm the prefix cache with the same prompt: scoring must not skip cached rows
    eng.generate([PROMPT], SamplingParams(max_tokens=2, temperature=0))
    params = SamplingParams(max_tokens=1, temperature=0, prompt_logprobs=3)
    out = first_output(eng, "score", params)
    lps = out.prompt_logprobs
    assert lps is not None and len(lps) == len(PROMPT) and lps[0] is None
    got = [lp.logprob for lp in lps[1:] if lp is not None]
    assert got == pytest.approx(ref, abs=1e-4)
    for lp, token in zip(lps[1:], PROMPT[1:], strict=True):
        assert lp is not None and lp.token_id == token and len(lp.top) == 3
        assert lp.top[0][1] >= lp.logprob - 1e-6


def test_plain_requests_carry_no_prompt_logprobs(model_dir: Path) -> None:
    eng = engine(model_dir)
    out = first_output(eng, "plain", SamplingParams(max_tokens=1, temperature=0))
    assert out.prompt_logprobs is None
