"""Scoring through a real server: ``echo`` + ``logprobs`` (prompt logprobs), ``max_tokens: 0``,
and lm-evaluation-harness's ``local-completions`` model on two local tasks.

The tasks (``lm_eval_tasks/``: a multiple-choice loglikelihood task and a generate-until
task) read JSON lines shipped with the test (``dataset_path: json``), so nothing comes
from the hub. Every loglikelihood lm-eval reports must equal the in-process engine's sum
of prompt logprobs over the same continuation tokens within 1e-4.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import openai
import pytest
from server_harness import ServerProcess

from deepseek_runtime.backends.native import NativeEngineOptions, build_engine
from deepseek_runtime.engine import LLMEngine, SamplingParams

pytestmark = pytest.mark.slow

TASKS = Path(__file__).parent / "lm_eval_tasks"
MODEL = "tiny-v3"


@pytest.fixture(scope="module")
def engine(tiny_model: Path) -> LLMEngine:
    options = NativeEngineOptions(model_dir=tiny_model, dtype="float32", device="cpu")
    return build_engine(options)[0]


def engine_prompt_logprobs(engine: LLMEngine, ids: list[int]) -> list[float | None]:
    rid = f"score-{len(ids)}-{sum(ids)}-{engine.num_steps}"
    engine.add_request(rid, ids, SamplingParams(max_tokens=1, temperature=0, prompt_logprobs=0))
    got: list[float | None] | None = None
    while engine.has_unfinished_requests():
        for out in engine.step():
            if out.request_id == rid and out.prompt_logprobs is not None:
                got = [None if lp is None else lp.logprob for lp in out.prompt_logprobs]
    assert got is not None
    return got


def test_echo_logprobs_score_only(server: ServerProcess, engine: LLMEngine) -> None:
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    ids = [0, 55, 66, 77, 88, 99, 111, 122]
    out = client.completions.create(
        model=MODEL, prompt=ids, max_tokens=0, echo=True, logprobs=2, temperature=0
    )
    choice = out.choices[0]
    assert choice.logprobs is not None and out.usage is not None
    lps = choice.logprobs.token_logprobs or []
    assert len(lps) == len(ids) and lps[0] is None
    assert out.usage.completion_tokens == 0 and out.usage.prompt_tokens == len(ids)
    expected = engine_prompt_logprobs(engine, ids)
    assert lps[1:] == pytest.approx(expected[1:], abs=1e-4)
    tops = choice.logprobs.top_logprobs or []
    assert tops[0] is None and all(1 <= len(t or {}) <= 2 for t in tops[1:])  # keyed by text
    # with generation: the prompt's entries, then the generated token's
    gen = client.completions.create(
        model=MODEL, prompt=ids, max_tokens=3, echo=True, logprobs=1, temperature=0
    )
    assert gen.choices[0].logprobs is not None
    glps = gen.choices[0].logprobs.token_logprobs or []
    assert len(glps) == len(ids) + 3 and glps[1 : len(ids)] == pytest.approx(lps[1:], abs=1e-5)


def test_max_tokens_zero_needs_echo(server: ServerProcess) -> None:
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model=MODEL, prompt="hi", max_tokens=0)


def task_yaml(tmp: Path) -> Path:
    """The two task configs, pointing at the shipped data files by absolute path."""
    common = "dataset_path: json\ntest_split: test\n"
    (tmp / "tiny_mc.yaml").write_text(
        "task: dsk_tiny_mc\n"
        + common
        + f"dataset_kwargs:\n  data_files:\n    test: {TASKS / 'tiny_mc.jsonl'}\n"
        "output_type: multiple_choice\ndoc_to_text: '{{question}}'\n"
        "doc_to_choice: '{{choices}}'\ndoc_to_target: '{{answer}}'\n"
        "metric_list:\n  - metric: acc\n"
    )
    (tmp / "tiny_gen.yaml").write_text(
        "task: dsk_tiny_gen\n"
        + common
        + f"dataset_kwargs:\n  data_files:\n    test: {TASKS / 'tiny_gen.jsonl'}\n"
        "output_type: generate_until\ndoc_to_text: '{{question}}'\ndoc_to_target: '{{answer}}'\n"
        "generation_kwargs:\n  until: ['\\n']\n  max_gen_toks: 6\n"
        "metric_list:\n  - metric: exact_match\n"
    )
    return tmp


def test_lm_eval_local_completions(
    server: ServerProcess,
    engine: LLMEngine,
    tiny_model: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import lm_eval  # noqa: PLC0415 (heavy; only this test needs it)
    from lm_eval.tasks import TaskManager  # noqa: PLC0415

    results: dict[str, Any] | None = lm_eval.simple_evaluate(
        model="local-completions",
        model_args=(
            f"base_url={server.url}/v1/completions,model={MODEL},tokenizer={tiny_model},"
            "tokenizer_backend=huggingface,num_concurrent=1,max_retries=1,tokenized_requests=True"
        ),
        tasks=["dsk_tiny_mc", "dsk_tiny_gen"],
        task_manager=TaskManager(include_path=str(task_yaml(tmp_path))),
        log_samples=True,
    )
    assert results is not None
    mc, gen = results["results"]["dsk_tiny_mc"], results["results"]["dsk_tiny_gen"]
    assert 0 <= mc["acc,none"] <= 1 and 0 <= gen["exact_match,none"] <= 1
    from transformers import AutoTokenizer  # noqa: PLC0415

    tok = AutoTokenizer.from_pretrained(str(tiny_model))
    checked = 0
    for sample in results["samples"]["dsk_tiny_mc"]:
        for (context, continuation), resp in zip(sample["arguments"], sample["resps"], strict=True):
            ctx = tok(context, add_special_tokens=False).input_ids
            whole = tok(context + continuation, add_special_tokens=False).input_ids
            lps = engine_prompt_logprobs(engine, whole)
            expected = sum(lp for lp in lps[len(ctx) :] if lp is not None)
            assert math.isclose(resp[0][0], expected, abs_tol=1e-4)
            checked += 1
    assert checked == 10
    assert len(results["samples"]["dsk_tiny_gen"]) == 3
