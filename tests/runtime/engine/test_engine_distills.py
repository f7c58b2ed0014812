"""The engine over tiny R1-distill checkpoints (Qwen2 and Llama, GQA K/V cache).

The same scheduler and KV manager as for DeepSeek: batched requests give exactly the
tokens each gives alone, with prefix-cache hits and under forced preemption, every block
comes back, and greedy output equals transformers' ``generate`` on the same weights.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from deepseek_runtime.backends.native import build_engine
from deepseek_runtime.backends.options import NativeEngineOptions
from deepseek_runtime.checkpoint.make_tiny import make_tiny_checkpoint
from deepseek_runtime.engine import LLMEngine, SamplingParams

pytestmark = [pytest.mark.unit, pytest.mark.usefixtures("one_torch_thread")]

ARCHS = ["qwen2", "llama"]


@pytest.fixture(scope="module", params=ARCHS)
def model_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    arch = str(request.param)
    return make_tiny_checkpoint(tmp_path_factory.mktemp(f"tiny-{arch}"), arch, seed=4)


def workload() -> tuple[list[list[int]], list[SamplingParams]]:
    rng = random.Random(2)
    shared = [[rng.randrange(6, 512) for _ in range(n)] for n in (18, 29)]
    prompts, params = [], []
    for i in range(24):
        head = shared[i % 2] if i % 3 else []
        prompts.append(head + [rng.randrange(6, 512) for _ in range(rng.randrange(1, 16))])
        max_tokens = rng.randrange(2, 10)
        if i % 4 == 0:
            params.append(SamplingParams(max_tokens=max_tokens, temperature=0.8, seed=7 + i))
        else:
            params.append(SamplingParams(max_tokens=max_tokens, temperature=0, ignore_eos=True))
    return prompts, params


def engine(model_dir: Path, **kw: object) -> LLMEngine:
    eng, _ = build_engine(NativeEngineOptions(model_dir=model_dir, block_size=4, **kw))  # type: ignore[arg-type]
    return eng


def check_all_blocks_free(eng: LLMEngine) -> None:
    stats = eng.stats()
    assert stats.num_blocks_free == stats.num_blocks_total
    assert eng.kv.pool.invariant_violations() == []


@pytest.fixture(scope="module")
def alone(model_dir: Path) -> list[list[int]]:
    eng = engine(model_dir, num_blocks=64, max_num_seqs=1, enable_prefix_caching=False)
    prompts, params = workload()
    return [eng.generate([p], sp)[0] for p, sp in zip(prompts, params, strict=True)]


def test_batched_with_prefix_hits_equals_alone(model_dir: Path, alone: list[list[int]]) -> None:
    eng = engine(model_dir, num_blocks=512, max_num_seqs=24, max_num_batched_tokens=128)
    prompts, params = workload()
    assert eng.generate(prompts, params) == alone
    assert eng.stats().prefix_cache_hits > 0
    check_all_blocks_free(eng)


def test_forced_preemption_equals_alone(model_dir: Path, alone: list[list[int]]) -> None:
    eng = engine(model_dir, num_blocks=20, max_num_seqs=24, max_num_batched_tokens=64)
    prompts, params = workload()
    assert eng.generate(prompts, params) == alone
    assert eng.stats().num_preemptions > 0
    check_all_blocks_free(eng)


def test_greedy_equals_transformers_generate(model_dir: Path, alone: list[list[int]]) -> None:
    from transformers import AutoModelForCausalLM  # noqa: PLC0415 (heavy, reference only)

    ref = AutoModelForCausalLM.from_pretrained(
        str(model_dir), dtype=torch.float32, attn_implementation="eager"
    ).eval()
    prompts, params = workload()
    checked = 0
    for prompt, sp, ours in zip(prompts, params, alone, strict=True):
        if sp.temperature != 0:
            continue
        with torch.no_grad():
            out = ref.generate(
                torch.tensor([prompt]),
                max_new_tokens=sp.max_tokens,
                min_new_tokens=sp.max_tokens,
                do_sample=False,
            )
        assert ours == out[0].tolist()[len(prompt) :]
        checked += 1
    assert checked >= 12
