"""PII redaction: recall on the shipped corpus, false positives on shipped ordinary text.

``tests/runtime/fixtures/pii_corpus.jsonl``: one JSON object per line, ``text`` and the
``pii`` spans (kind and exact value) it holds; lines with no spans are near misses (a card
number failing Luhn, an ID with a wrong check digit or an impossible date, dates, versions,
loopback addresses). ``ordinary_text.md``: everyday English and Chinese prose plus a frozen
snapshot of some docs pages; every finding there is a false positive.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from deepseek_runtime.server.audit import PROMPT_CHARS, audit_prompt
from deepseek_runtime.server.pii import RedactingFilter, card_ok, cn_id_ok, find_pii, redact

pytestmark = pytest.mark.unit

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
KINDS = {"email", "phone", "cn_mobile", "cn_id", "card", "ipv4", "ipv6", "api_key"}
MIN_RECALL = 1.0  # every labelled span of the corpus, per kind
MAX_FP_PER_1000_WORDS = 0.2


def _corpus() -> list[dict[str, object]]:
    lines = (FIXTURES / "pii_corpus.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def test_corpus_covers_every_kind() -> None:
    kinds = {p["kind"] for row in _corpus() for p in row["pii"]}  # type: ignore[attr-defined]
    assert kinds == KINDS
    assert sum(not row["pii"] for row in _corpus()) >= 15  # near misses


def test_recall_and_precision_on_the_corpus() -> None:
    expected = found = extra = 0
    per_kind: dict[str, list[int]] = {k: [0, 0] for k in KINDS}
    for row in _corpus():
        text = str(row["text"])
        want = {(p["kind"], p["value"]) for p in row["pii"]}  # type: ignore[attr-defined]
        got = {(f.kind, text[f.start : f.end]) for f in find_pii(text)}
        expected += len(want)
        found += len(want & got)
        extra += len(got - want)
        for kind, _ in want:
            per_kind[kind][0] += 1
        for kind, _ in want & got:
            per_kind[kind][1] += 1
        red = redact(text)
        for _, value in want:
            assert value not in red, (text, red)
    recall = {k: hit / total for k, (total, hit) in per_kind.items()}
    print(json.dumps({"pii_recall": recall, "spans": expected, "corpus_false_positives": extra}))
    assert found / expected >= MIN_RECALL and min(recall.values()) >= MIN_RECALL, recall
    assert extra == 0


def test_false_positive_rate_on_ordinary_text() -> None:
    text = (FIXTURES / "ordinary_text.md").read_text(encoding="utf-8")
    words = len(text.split())
    findings = find_pii(text)
    rate = 1000 * len(findings) / words
    print(json.dumps({"ordinary_words": words, "false_positives": len(findings), "per_1000": rate}))
    assert words > 5000
    assert rate <= MAX_FP_PER_1000_WORDS, [text[f.start : f.end] for f in findings]


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("11010519491231002X", True),
        ("11010519491231002x", True),
        ("110105194912310021", False),  # check digit
        ("110105199302300015", False),  # 30 February
        ("110105185001010011", False),  # before 1900
        ("1101051949123100", False),  # length
    ],
)
def test_resident_id_check(value: str, ok: bool) -> None:
    assert cn_id_ok(value) is ok


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("4111 1111 1111 1111", True),
        ("4111111111111112", False),  # Luhn
        ("378282246310005", True),
        ("6222021001122337", True),  # UnionPay
        ("9111111111111111", False),  # no such issuer (and no Luhn)
        ("1234567812345670", False),  # Luhn-valid, no issuer
    ],
)
def test_card_check(value: str, ok: bool) -> None:
    assert card_ok(value) is ok


def test_redaction_labels() -> None:
    text = "手机13812345678，邮箱a@b.cn，卡4111111111111111，IP 203.0.113.9"
    assert redact(text) == "手机[PHONE]，邮箱[EMAIL]，卡[CARD]，IP [IP]"


def test_log_filter_redacts_messages_and_extras() -> None:
    record = logging.LogRecord("t", logging.INFO, "f", 1, "user %s said hi", ("x@y.org",), None)
    record.client = "203.0.113.7"
    assert RedactingFilter().filter(record)
    assert record.getMessage() == "user [EMAIL] said hi"
    assert record.client == "[IP]"


def test_audit_prompt_is_cut_without_leaving_half_a_number() -> None:
    card = "4111 1111 1111 1111"
    text = "x" * (PROMPT_CHARS - 8) + card + " tail"
    out = audit_prompt(text)
    assert out.endswith(" [truncated]") and "4111" not in out and "1111" not in out
    assert len(out) == PROMPT_CHARS + len(" [truncated]")
    assert audit_prompt("mail a@b.io") == "mail [EMAIL]"
