"""Logits of our runner vs transformers' Qwen2ForCausalLM / LlamaForCausalLM (the R1 distills).

Same method as ``test_model_reference.py``: fp32 on CPU, eager attention, tolerance 1e-4
max abs; decode steps read the paged K/V cache through shuffled block tables. The configs
cover GQA ratios 1, 2 and 4, tied and untied embeddings, and rope scaling on and off.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from ds_model_helpers import (
    BlockAllocator,
    load_reference,
    reference_logits,
    run_prefill_then_decode,
)

from deepseek_runtime.model.runner import ModelRunner, SeqChunk

pytestmark = [pytest.mark.unit, pytest.mark.reference]

TOL = 1e-4
BLOCK = 4

# name -> (arch, make_tiny kwargs); heads 4 unless set
CONFIGS: dict[str, tuple[str, dict[str, Any]]] = {
    # GQA 2, q/k/v bias, plain rope, untied
    "qwen2-default": ("qwen2", {}),
    # GQA 1 (multi-head), tied embeddings, large rope_theta as the 14B/32B distills
    "qwen2-mha-tied": (
        "qwen2",
        {
            "seed": 1,
            "overrides": {
                "num_key_value_heads": 4,
                "tie_word_embeddings": True,
                "rope_theta": 1000000.0,
            },
        },
    ),
    # GQA 4, llama3 rope scaling, explicit head_dim
    "llama-default": ("llama", {}),
    # GQA 2, no rope scaling, tied, attention bias on
    "llama-plain-rope-tied": (
        "llama",
        {
            "seed": 2,
            "overrides": {
                "num_key_value_heads": 2,
                "rope_scaling": None,
                "rope_theta": 10000.0,
                "tie_word_embeddings": True,
                "attention_bias": True,
            },
        },
    ),
    # 8 heads over 2 KV heads (GQA 4) with a head_dim that is not hidden / heads
    "qwen2-gqa4-wide-heads": (
        "qwen2",
        {
            "seed": 3,
            "overrides": {"num_attention_heads": 8, "num_key_value_heads": 2, "head_dim": 24},
        },
    ),
}


def _ids(n: int, seed: int, vocab: int = 512) -> list[int]:
    return torch.randint(6, vocab, (n,), generator=torch.Generator().manual_seed(seed)).tolist()


@pytest.fixture(scope="module")
def pair(make_ckpt: Callable[..., Path]) -> Any:
    cache: dict[str, tuple[ModelRunner, Any]] = {}

    def get(name: str) -> tuple[ModelRunner, Any]:
        if name not in cache:
            arch, kwargs = CONFIGS[name]
            path = make_ckpt(name, arch, **kwargs)
            runner = ModelRunner.from_pretrained(path, block_size=BLOCK, num_blocks=64)
            cache[name] = (runner, load_reference(path))
        return cache[name]

    return get


@pytest.mark.parametrize("name", list(CONFIGS))
def test_prefill_and_paged_decode_match_transformers(name: str, pair: Any) -> None:
    runner, ref = pair(name)
    ids = _ids(21, seed=len(name))
    expected = reference_logits(ref, ids)
    assert expected.abs().max() > 1.0  # logits of order one: the tolerance means something
    got = run_prefill_then_decode(runner, ids, 11, BlockAllocator(64, BLOCK, seed=1))
    diffs = [(g - expected[10 + i]).abs().max().item() for i, g in enumerate(got)]
    print(f"{name}: max abs diff {max(diffs):.3g} over {len(diffs)} steps")
    assert max(diffs) < TOL, diffs


def test_cache_rows_hold_gqa_keys_and_values(pair: Any) -> None:
    """Block accounting uses the K/V bytes of GQA, not MLA's latent width."""
    runner, _ = pair("llama-default")
    # 3 layers x 4 slots x (2 x 1 KV head x head_dim 16) x 4 bytes
    assert runner.kv_bytes_per_block() == 3 * BLOCK * 2 * 1 * 16 * 4
    assert runner.kv_cache.shape == (3, 64 * BLOCK, 32)
    qwen, _ = pair("qwen2-default")  # 2 KV heads x head_dim 16
    assert qwen.kv_cache.shape[-1] == 2 * 2 * 16


@pytest.mark.parametrize("name", ["qwen2-default", "llama-default"])
def test_mixed_batch_and_chunked_prefill(name: str, pair: Any) -> None:
    runner, ref = pair(name)
    seqs = [_ids(10, 11), _ids(12, 12), _ids(11, 13)]
    expected = [reference_logits(ref, s) for s in seqs]
    alloc = BlockAllocator(64, BLOCK, seed=2)
    tables: list[list[int]] = [[], [], []]
    steps = [
        [(0, 0, 7), (1, 0, 5)],
        [(0, 7, 8), (1, 5, 9), (2, 0, 9)],
        [(0, 8, 9), (1, 9, 10), (2, 9, 10)],
        [(2, 10, 11), (1, 10, 12), (0, 9, 10)],
    ]
    for step in steps:
        chunks = []
        for seq, start, end in step:
            alloc.grow(tables[seq], end)
            chunks.append(SeqChunk(seqs[seq][start:end], start, list(tables[seq])))
        out = runner.execute(chunks)
        for row, (seq, _, end) in enumerate(step):
            assert (out[row] - expected[seq][end - 1]).abs().max().item() < TOL


@pytest.mark.parametrize("name", ["qwen2-default", "qwen2-mha-tied", "llama-default"])
def test_greedy_generation_equals_transformers_generate(name: str, pair: Any) -> None:
    runner, ref = pair(name)
    prompt = _ids(9, 31)
    new_tokens = 16
    with torch.no_grad():
        ref_out = ref.generate(torch.tensor([prompt]), max_new_tokens=new_tokens, do_sample=False)[
            0
        ].tolist()[len(prompt) :]
    alloc = BlockAllocator(64, BLOCK, seed=4)
    table = alloc.grow([], len(prompt))
    ours: list[int] = []
    logits = runner.execute([SeqChunk(prompt, 0, list(table))])[0]
    pos = len(prompt)
    while len(ours) < new_tokens:
        token = int(torch.argmax(logits))
        ours.append(token)
        if token in runner.config.eos_token_ids:
            break
        alloc.grow(table, pos + 1)
        logits = runner.execute([SeqChunk([token], pos, list(table))])[0]
        pos += 1
    assert ours == ref_out


@pytest.mark.parametrize("name", ["qwen2-default", "llama-default"])
def test_long_context_prefill_and_decode(
    name: str, pair: Any, make_ckpt: Callable[..., Path]
) -> None:
    """540 tokens: past llama3's original 512-token window, where the scaled bands matter."""
    _, ref = pair(name)
    arch, kwargs = CONFIGS[name]
    runner = ModelRunner.from_pretrained(
        make_ckpt(name, arch, **kwargs), block_size=16, num_blocks=40
    )
    ids = _ids(540, seed=71)
    expected = reference_logits(ref, ids)
    got = run_prefill_then_decode(runner, ids, 536, BlockAllocator(40, 16, seed=5))
    diffs = [(g - expected[535 + i]).abs().max().item() for i, g in enumerate(got)]
    assert max(diffs) < TOL, max(diffs)
