"""Structured outputs: xgrammar grammars as a token mask on the sampler's logits.

A request whose :class:`~deepseek_runtime.engine.api.SamplingParams` carries a
:class:`~deepseek_runtime.engine.api.GuidedDecoding` gets a grammar matcher when it is
added. Each step the sampler asks :meth:`StructuredOutputs.mask` to fill one bitmask row
per *constrained* row of the batch and applies it to those rows only (free requests in
the same batch are untouched); after sampling, :meth:`StructuredOutputs.accept` advances
each matcher by its token. A request whose grammar has completed is reported finished
(``finish_reason`` stop) by the engine.

Grammars are compiled once per distinct (kind, spec): xgrammar's compiler caches by the
schema / regex text, and :class:`StructuredOutputs` keeps the compiled object per key, so
the hundredth request with a schema costs a matcher, not a compile. JSON is emitted
without free whitespace (``any_whitespace=False``): even a model with random weights then
reaches the end of the document instead of padding it with blanks.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import torch
import xgrammar as xgr

from deepseek_runtime.engine.api import EngineError, GuidedDecoding

COMPILED_CACHE = 256  # distinct grammars kept compiled

# xgrammar (0.2.9) writes JSON string characters with these classes: the first (for
# ``maxLength`` strings) lets raw control characters through, and both let UTF-16
# surrogates through, which are not valid UTF-8. Both are replaced before compiling.
_STRING_CHARS = {
    r"[^\"\\\r\n]": r"[^\0-\x1f\"\\\uD800-\uDFFF]",
    r"[^\0-\x1f\"\\\r\n]": r"[^\0-\x1f\"\\\uD800-\uDFFF]",
}


def _strict_strings(ebnf: str) -> str:
    for loose, strict in _STRING_CHARS.items():
        ebnf = ebnf.replace(loose, strict)
    return ebnf


def _vocab(tokenizer: Any, vocab_size: int) -> list[str]:
    """Token strings by id (``tokenizers.Tokenizer``); ids past the tokenizer are ''."""
    out = []
    for i in range(vocab_size):
        tok = tokenizer.id_to_token(i)
        out.append("" if tok is None else tok)
    return out


def tokenizer_info(
    tokenizer: Any, vocab_size: int, stop_token_ids: Sequence[int]
) -> xgr.TokenizerInfo:
    """xgrammar's view of a ``tokenizers.Tokenizer`` (vocabulary type read from its JSON)."""
    meta = xgr.TokenizerInfo._detect_metadata_from_hf(tokenizer.to_str())
    return xgr.TokenizerInfo(
        _vocab(tokenizer, vocab_size),
        meta["vocab_type"],
        vocab_size=vocab_size,
        stop_token_ids=list(stop_token_ids) or None,
        add_prefix_space=bool(meta["add_prefix_space"]),
    )


def _choice_regex(choices: list[str]) -> str:
    def escape(text: str) -> str:
        return "".join("\\" + c if c in r"\.^$|?*+()[]{}/-" else c for c in text)

    return "(" + "|".join(escape(c) for c in choices) + ")"


class StructuredOutputs:
    """Compiled grammars (cached) and one matcher per constrained request."""

    def __init__(self, info: xgr.TokenizerInfo) -> None:
        self.vocab_size = info.vocab_size
        self._compiler = xgr.GrammarCompiler(info, max_threads=1)
        self._matchers: dict[str, xgr.GrammarMatcher] = {}
        self._compile = lru_cache(maxsize=COMPILED_CACHE)(self._compile_uncached)

    def _compile_uncached(self, kind: str, spec: str) -> xgr.CompiledGrammar:
        if kind == "json_object":
            grammar = xgr.Grammar.from_json_schema('{"type": "object"}', any_whitespace=False)
            return self._compiler.compile_grammar(_strict_strings(str(grammar)))
        if kind == "json_schema":
            grammar = xgr.Grammar.from_json_schema(spec, any_whitespace=False)
            return self._compiler.compile_grammar(_strict_strings(str(grammar)))
        if kind == "regex":
            return self._compiler.compile_regex(spec)
        if kind == "choice":
            return self._compiler.compile_regex(_choice_regex(json.loads(spec)))
        if kind == "structural_tag":  # its token markers resolve against the vocabulary
            tagged = self._compiler.compile_structural_tag(spec)
            return self._compiler.compile_grammar(_strict_strings(str(tagged.grammar)))
        raise EngineError(f"unknown structured output kind {kind!r}")

    def compile(self, guided: GuidedDecoding) -> xgr.CompiledGrammar:
        """The compiled grammar; EngineError (a 400) when the schema or regex is invalid."""
        try:
            return self._compile(guided.kind, guided.spec)
        except EngineError:
            raise
        except Exception as exc:  # xgrammar raises RuntimeError / ValueError subclasses
            raise EngineError(f"invalid {guided.kind} for structured output: {exc}") from None

    def cache_info(self) -> tuple[int, int]:
        """(hits, misses) of the compiled-grammar cache."""
        info = self._compile.cache_info()
        return info.hits, info.misses

    def add_request(self, request_id: str, guided: GuidedDecoding) -> None:
        self._matchers[request_id] = xgr.GrammarMatcher(self.compile(guided))

    def remove_request(self, request_id: str) -> None:
        self._matchers.pop(request_id, None)

    def is_constrained(self, request_id: str) -> bool:
        return request_id in self._matchers

    def mask(self, logits: torch.Tensor, request_ids: Sequence[str]) -> None:
        """Set to -inf, in place, every token a constrained row's grammar forbids now."""
        rows = [i for i, rid in enumerate(request_ids) if rid in self._matchers]
        if not rows:
            return
        bitmask = xgr.allocate_token_bitmask(len(request_ids), self.vocab_size)
        for i in rows:
            self._matchers[request_ids[i]].fill_next_token_bitmask(bitmask, i)
        xgr.apply_token_bitmask_inplace(
            logits, bitmask.to(logits.device), vocab_size=self.vocab_size, indices=rows
        )

    def accept(self, request_id: str, token_id: int) -> bool:
        """Advance the request's grammar by ``token_id``; True once it has terminated.

        A grammar terminates when it accepts a stop token (EOS) after a complete
        document; until then the mask leaves only tokens that continue or end it."""
        matcher = self._matchers.get(request_id)
        if matcher is None:
            return False
        if not matcher.accept_token(token_id):
            return True  # cannot happen under the mask; end the request rather than loop
        return bool(matcher.is_terminated())
