"""A tiny checkpoint whose greedy output is a chosen token path: real weights, not a stub.

The random tiny checkpoints say nothing predictable, yet the chat parsers must be seen
end to end: the model has to *write* ``</think>`` or a DeepSeek tool call. So we set the
weights of a ``make-tiny`` checkpoint so that the real engine, running the real forward
pass, walks a chain of tokens we pick::

    every attention o_proj and MLP/expert down_proj = 0
        → the residual stream at each position is the token's own embedding
    embedding of the k-th chain token = unit vector e_k  (k < hidden_size)
    lm_head row of its successor      = e_k,  every other row 0
        → logits(next) = |RMSNorm(e_k)| = sqrt(hidden) for the successor, 0 elsewhere

Greedy decoding after a prompt ending in a chain's first token therefore emits the rest
of that chain, token by token, through the scheduler, KV cache, sampler, detokenizer and
HTTP layer as any model would. A token can have one successor only, so a chain must not
repeat a token with different followers (:func:`successors` checks); multi-character
tokens added to the tokenizer keep chains short and unambiguous. The tokenizer may also
gain DeepSeek's tool-call tokens (as ordinary, decoded tokens, as DeepSeek-V3's tokenizer
has them) and a chat template.
"""

from __future__ import annotations

import itertools
import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tokenizers import AddedToken, Tokenizer

from deepseek_runtime.server.tool_calls import CALL_BEGIN, CALL_END, CALLS_BEGIN, CALLS_END, SEP

TOOL_TOKENS = [
    CALLS_BEGIN,
    CALLS_END,
    CALL_BEGIN,
    CALL_END,
    SEP,
    "<｜tool▁outputs▁begin｜>",
    "<｜tool▁outputs▁end｜>",
    "<｜tool▁output▁begin｜>",
    "<｜tool▁output▁end｜>",
]

# DeepSeek-V3's chat format with tools, in the shape of its published template: the tool
# list in the system part, earlier calls as tool-call tokens, results as tool outputs.
V3_TOOL_TEMPLATE = (
    "{{ bos_token }}"
    "{%- for m in messages if m['role'] == 'system' -%}{{ m['content'] }}{%- endfor -%}"
    "{%- if tools -%}{{ '\\n\\n## Tools\\nYou have the following functions:\\n' }}"
    "{%- for t in tools -%}"
    "{{ '\\n### ' + t['function']['name'] + '\\n' }}"
    "{{ (t['function']['description'] or '') + '\\n```json\\n' }}"
    "{{ (t['function']['parameters'] or {}) | tojson }}{{ '\\n```\\n' }}"
    "{%- endfor -%}{%- endif -%}"
    "{%- for m in messages -%}"
    "{%- if m['role'] == 'user' -%}<｜User｜>{{ m['content'] }}"
    "{%- elif m['role'] == 'assistant' and m['tool_calls'] is defined -%}"
    "<｜Assistant｜>{{ m['content'] }}"
    + CALLS_BEGIN
    + "{%- for c in m['tool_calls'] -%}"
    + CALL_BEGIN
    + "function"
    + SEP
    + "{{ c['function']['name'] + '\\n```json\\n' + c['function']['arguments'] + '\\n```' }}"
    + CALL_END
    + "{%- endfor -%}"
    + CALLS_END
    + "<｜end▁of▁sentence｜>"
    "{%- elif m['role'] == 'assistant' -%}<｜Assistant｜>{{ m['content'] }}<｜end▁of▁sentence｜>"
    "{%- elif m['role'] == 'tool' -%}<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>"
    "{{ m['content'] }}<｜tool▁output▁end｜><｜tool▁outputs▁end｜>"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}<｜Assistant｜>{%- endif -%}"
)


def copy_with_tokens(
    base: Path,
    out: Path,
    added: Sequence[str],
    chat_template: str | None = None,
    unspecial: Sequence[str] = (),
) -> Tokenizer:
    """Copy ``base`` to ``out`` with ``added`` as ordinary tokens (and a new template).

    ``unspecial`` names special tokens to make ordinary, so decoding keeps their text
    (DeepSeek-R1's tokenizers have ``<think>`` and ``</think>`` so).
    """
    shutil.copytree(base, out)
    doc = json.loads((out / "tokenizer.json").read_text(encoding="utf-8"))
    for entry in doc["added_tokens"]:
        if entry["content"] in unspecial:
            entry["special"] = False
    (out / "tokenizer.json").write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    tok = Tokenizer.from_file(str(out / "tokenizer.json"))
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in added])
    tok.save(str(out / "tokenizer.json"))
    if chat_template is not None:
        path = out / "tokenizer_config.json"
        cfg = json.loads(path.read_text(encoding="utf-8"))
        cfg["chat_template"] = chat_template
        path.write_text(json.dumps(cfg, ensure_ascii=False, indent=2), encoding="utf-8")
    return tok


def successors(chains: Sequence[Sequence[int]]) -> dict[int, int]:
    """Each chain token's follower; ValueError when one token would need two."""
    nxt: dict[int, int] = {}
    for chain in chains:
        for a, b in itertools.pairwise(chain):
            if nxt.setdefault(a, b) != b:
                raise ValueError(f"token {a} is followed by both {nxt[a]} and {b}")
    return nxt


def write_chain_weights(model_dir: Path, chains: Sequence[Sequence[int]], seed: int = 0) -> None:
    """Rewrite the weights so that greedy decoding follows ``chains`` (see module doc)."""
    vocab = Tokenizer.from_file(str(model_dir / "tokenizer.json")).get_vocab_size(True)
    cfg_path = model_dir / "config.json"
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    hidden = int(cfg["hidden_size"])
    nxt = successors(chains)
    if len(nxt) > hidden:
        raise ValueError(f"{len(nxt)} chain tokens need hidden_size >= {len(nxt)}")
    path = model_dir / "model.safetensors"
    tensors = load_file(str(path))
    for name, t in tensors.items():
        if name.endswith(("o_proj.weight", "down_proj.weight")):
            tensors[name] = torch.zeros_like(t)
    gen = torch.Generator().manual_seed(seed)
    embed = torch.randn(vocab, hidden, generator=gen) * 0.02
    head = torch.zeros(vocab, hidden)
    for k, (token, follower) in enumerate(nxt.items()):
        embed[token] = 0.0
        embed[token, k] = 1.0
        head[follower, k] = 1.0
    dtype = tensors["model.embed_tokens.weight"].dtype
    tensors["model.embed_tokens.weight"] = embed.to(dtype)
    tensors["lm_head.weight"] = head.to(dtype)
    tensors["model.norm.weight"] = torch.ones(hidden, dtype=dtype)
    save_file(tensors, str(path), metadata={"format": "pt"})
    cfg["vocab_size"] = vocab
    cfg_path.write_text(json.dumps(cfg, indent=2) + "\n", encoding="utf-8")
