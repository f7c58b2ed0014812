"""Train a small byte-level BPE tokenizer on the shipped corpus, with DeepSeek's special tokens.

Called by ``make_tiny``. Byte-level, so any UTF-8 text round-trips; the special tokens
are DeepSeek's BOS/EOS and chat-role markers (the R1 distills share them);
``tokenizer_config.json`` carries a DeepSeek-style Jinja2 chat template, or for the
distills one whose generation prompt opens ``<think>``.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

BOS = "<｜begin▁of▁sentence｜>"
EOS = "<｜end▁of▁sentence｜>"
USER = "<｜User｜>"
ASSISTANT = "<｜Assistant｜>"
SPECIAL_TOKENS = [BOS, EOS, USER, ASSISTANT, "<think>", "</think>"]  # ids 0 .. 5

CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{%- for message in messages if message['role'] == 'system' -%}"
    "{{ message['content'] }}"
    "{%- endfor -%}"
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'user' -%}" + USER + "{{ message['content'] }}"
    "{%- elif message['role'] == 'assistant' -%}"
    + ASSISTANT
    + "{{ message['content'] }}"
    + EOS
    + "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}" + ASSISTANT + "{%- endif -%}"
)


# The R1 distills' template: earlier turns lose their reasoning (everything up to
# ``</think>``), and the generation prompt opens the reasoning block, so the model's
# output starts inside ``<think>`` (as DeepSeek-R1's own template does).
DISTILL_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{%- for message in messages if message['role'] == 'system' -%}"
    "{{ message['content'] }}"
    "{%- endfor -%}"
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'user' -%}" + USER + "{{ message['content'] }}"
    "{%- elif message['role'] == 'assistant' -%}"
    "{%- set content = message['content'] -%}"
    "{%- if '</think>' in content -%}{%- set content = content.split('</think>')[-1] -%}"
    "{%- endif -%}" + ASSISTANT + "{{ content }}" + EOS + "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}" + ASSISTANT + "{{ '<think>\\n' }}{%- endif -%}"
)


def corpus_text() -> str:
    """The English prose shipped with the package for tokenizer training."""
    return (resources.files("deepseek_runtime.checkpoint") / "data" / "corpus.txt").read_text(
        encoding="utf-8"
    )


def train_tokenizer(vocab_size: int) -> Tokenizer:
    """A byte-level BPE tokenizer with at most ``vocab_size`` tokens (specials are ids 0-5)."""
    minimum = len(pre_tokenizers.ByteLevel.alphabet()) + len(SPECIAL_TOKENS)
    if vocab_size < minimum:
        raise ValueError(f"vocab_size: a byte-level tokenizer needs at least {minimum} tokens")
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(corpus_text().splitlines(), trainer=trainer)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, 0)]
    )
    return tokenizer


def write_tokenizer(
    out_dir: Path, vocab_size: int, model_max_length: int, chat_template: str = CHAT_TEMPLATE
) -> Tokenizer:
    """Write ``tokenizer.json`` and ``tokenizer_config.json`` (with ``chat_template``)."""
    tokenizer = train_tokenizer(vocab_size)
    tokenizer.save(str(out_dir / "tokenizer.json"))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": BOS,
        "eos_token": EOS,
        "pad_token": EOS,
        "add_bos_token": True,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": model_max_length,
        "chat_template": chat_template,
    }
    (out_dir / "tokenizer_config.json").write_text(
        json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    return tokenizer
