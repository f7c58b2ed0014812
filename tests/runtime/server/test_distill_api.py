"""Tiny R1-Distill-Qwen and R1-Distill-Llama checkpoints served through the OpenAI API.

A real ``deepseek-runtime serve`` process per architecture, the official ``openai`` client,
and transformers' ``generate`` on the same weights as the reference: greedy completions
must give the same tokens; chat goes through the distills' template, which opens
``<think>`` in the prompt.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
import torch
from server_harness import ServerProcess

from deepseek_runtime.checkpoint.make_tiny import make_tiny_checkpoint

pytestmark = pytest.mark.slow

NEW_TOKENS = 12


@pytest.fixture(scope="module", params=["qwen2", "llama"])
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Path, ServerProcess]]:
    arch = str(request.param)
    model = make_tiny_checkpoint(tmp_path_factory.mktemp(f"distill-{arch}"), arch, seed=5)
    proc = ServerProcess(model, args=["--served-model-name", f"tiny-r1-distill-{arch}"])
    proc.start(tmp_path_factory.mktemp("logs"))
    yield model, proc
    proc.stop()


def _reference(model: Path) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: PLC0415

    ref = AutoModelForCausalLM.from_pretrained(
        str(model), dtype=torch.float32, attn_implementation="eager"
    ).eval()
    return ref, AutoTokenizer.from_pretrained(str(model))


def test_greedy_completion_equals_transformers(served: tuple[Path, ServerProcess]) -> None:
    model, proc = served
    ref, tok = _reference(model)
    client = openai.OpenAI(base_url=proc.url + "/v1", api_key="unused")
    name = client.models.list().data[0].id
    messages = [{"role": "user", "content": "Say something about Kubernetes."}]
    prompt_ids = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    if not isinstance(prompt_ids, list):  # transformers 5 returns a BatchEncoding
        prompt_ids = list(prompt_ids["input_ids"])
    assert tok.decode(prompt_ids).endswith("<｜Assistant｜><think>\n")
    with torch.no_grad():
        ref_ids = ref.generate(
            torch.tensor([prompt_ids]),
            max_new_tokens=NEW_TOKENS,
            min_new_tokens=NEW_TOKENS,
            do_sample=False,
        )[0].tolist()[len(prompt_ids) :]
    out = client.completions.create(
        model=name,
        prompt=prompt_ids,
        max_tokens=NEW_TOKENS,
        temperature=0,
        logprobs=1,
        extra_body={"ignore_eos": True},
    )
    choice = out.choices[0]
    assert choice.finish_reason == "length"
    assert out.usage is not None and out.usage.completion_tokens == NEW_TOKENS
    expected_text = tok.decode(ref_ids)
    assert choice.text in (expected_text, expected_text.rstrip("\ufffd"))
    # the chat endpoint renders the same template and gives the same greedy answer
    chat = client.chat.completions.create(
        model=name,
        messages=messages,  # type: ignore[arg-type]
        max_tokens=NEW_TOKENS,
        temperature=0,
        extra_body={"ignore_eos": True},
    )
    content = chat.choices[0].message.content or ""
    assert chat.usage is not None and chat.usage.prompt_tokens == len(prompt_ids)
    assert content in (expected_text, expected_text.rstrip("\ufffd"))


def test_streamed_chat_equals_whole(served: tuple[Path, ServerProcess]) -> None:
    _, proc = served
    client = openai.OpenAI(base_url=proc.url + "/v1", api_key="unused")
    name = client.models.list().data[0].id
    messages = [{"role": "user", "content": "hello"}]
    whole = client.chat.completions.create(
        model=name,
        messages=messages,
        max_tokens=8,
        temperature=0,  # type: ignore[arg-type]
    )
    streamed = "".join(
        chunk.choices[0].delta.content or ""
        for chunk in client.chat.completions.create(
            model=name,
            messages=messages,  # type: ignore[arg-type]
            max_tokens=8,
            temperature=0,
            stream=True,
        )
        if chunk.choices
    )
    assert streamed == (whole.choices[0].message.content or "")
