"""Content policy: blocklisted words and regular expressions, on prompts and on outputs.

The policy file is YAML or JSON, validated by :class:`ContentPolicy`::

    blocklist: ["forbidden phrase"]          # whole-word, case-insensitive by default
    regex: [{name: ssn, pattern: '\\b\\d{3}-\\d{2}-\\d{4}\\b'}]
    apply_to_prompts: true
    apply_to_outputs: true
    case_sensitive: false

A refused prompt gets 400 with code ``content_filter`` (:func:`screen_prompts`, the one
place every API face checks prompts: ``server.preparation`` and ``server.v2_common``); an
output that matches stops the generation and ends with ``finish_reason: content_filter``
(``server.generation``). Loaded by ``server.state``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import APIError


class RegexRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(min_length=1)
    pattern: str = Field(min_length=1)

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from None
        return value


class ContentPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    blocklist: list[str] = Field(default_factory=list)
    regex: list[RegexRule] = Field(default_factory=list)
    apply_to_prompts: bool = True
    apply_to_outputs: bool = True
    case_sensitive: bool = False

    @field_validator("blocklist")
    @classmethod
    def _non_empty(cls, value: list[str]) -> list[str]:
        if any(not w.strip() for w in value):
            raise ValueError("blocklist entries must be non-empty")
        return value


@dataclass(frozen=True, slots=True)
class Violation:
    rule: str  # "blocklist" or the regex rule's name; never the matched text


class ContentFilter:
    """Compiled policy; ``check`` returns the first rule a text breaks, if any."""

    def __init__(self, policy: ContentPolicy) -> None:
        self.policy = policy
        flags = 0 if policy.case_sensitive else re.IGNORECASE
        self._rules: list[tuple[str, re.Pattern[str]]] = []
        if policy.blocklist:
            words = "|".join(re.escape(w.strip()) for w in policy.blocklist)
            self._rules.append(("blocklist", re.compile(rf"(?<!\w)(?:{words})(?!\w)", flags)))
        self._rules += [(r.name, re.compile(r.pattern, flags)) for r in policy.regex]

    @classmethod
    def from_file(cls, path: Path) -> ContentFilter:
        """Load and validate; ValueError naming the file and the problem."""
        try:
            text = path.read_text(encoding="utf-8")
            data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
            return cls(ContentPolicy.model_validate(data or {}))
        except OSError as exc:
            raise ValueError(f"cannot read content policy {path}: {exc.strerror}") from None
        except (yaml.YAMLError, json.JSONDecodeError) as exc:
            raise ValueError(f"content policy {path} does not parse: {exc}") from None
        except ValidationError as exc:
            raise ValueError(f"content policy {path} is invalid: {exc}") from None

    def check(self, text: str) -> Violation | None:
        for name, pattern in self._rules:
            if pattern.search(text):
                return Violation(name)
        return None

    def check_prompt(self, text: str) -> Violation | None:
        return self.check(text) if self.policy.apply_to_prompts else None

    def check_output(self, text: str) -> Violation | None:
        return self.check(text) if self.policy.apply_to_outputs else None


def screen_prompts(
    content_filter: ContentFilter | None, texts: Iterable[str], *, subject: str, param: str
) -> None:
    """400 (code ``content_filter``, naming the rule, never the text) if any text breaks it.

    ``texts`` is read only when a filter is configured, so callers may pass a lazy
    iterable (decoding token-id prompts costs nothing without a policy).
    """
    if content_filter is None:
        return
    for text in texts:
        if v := content_filter.check_prompt(text):
            raise APIError(
                400,
                f"{subject} refused by content policy ({v.rule})",
                param=param,
                code="content_filter",
            )
