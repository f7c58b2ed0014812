"""PII detection and redaction for the audit log and the application logs.

What is found, in priority order (an earlier kind claims its span; later kinds skip it):

    api_key    provider-prefixed keys (sk-, AKIA, ghp_, xox?-, AIza, hf_), JWTs, PEM
               private keys, ``password=...``-style values, long mixed-case random tokens
    email      local@domain.tld
    cn_id      18-digit mainland-China resident ID: a real birth date and the
               ISO 7064 MOD 11-2 check digit (``X`` for 10)
    card       13-19 digits, optional single space/dash separators, a known issuer
               prefix (Visa, Mastercard, Amex, Discover, JCB, Diners, UnionPay) and Luhn
    cn_mobile  mainland-China mobile numbers: 1[3-9]X XXXX XXXX, optional +86 / 86
    phone      +CC international (8-15 digits), NANP (415) 555-0100, trunk-0 national
    ipv6, ipv4 validated by :mod:`ipaddress`; loopback and unspecified addresses are left
               alone (they identify no one, and logs and docs are full of them)

Checks that a regular expression cannot make (Luhn, the ID check digit and date, IP
validity) run on each candidate, which is what keeps false positives low on ordinary
text; ``tests/runtime/server/test_pii.py`` measures recall on a shipped corpus and the
false-positive rate on shipped ordinary text. Lookarounds use ASCII classes, not ``\\b``,
because CJK characters are word characters: ``手机13812345678`` has no word boundary.

Used by :mod:`.audit` (prompts, when ``--log-prompts`` is on) and by the log handler that
``server.cli`` installs (:class:`RedactingFilter`).
"""

from __future__ import annotations

import ipaddress
import logging
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

LABELS = {
    "api_key": "[API_KEY]",
    "email": "[EMAIL]",
    "cn_id": "[CN_ID]",
    "card": "[CARD]",
    "cn_mobile": "[PHONE]",
    "phone": "[PHONE]",
    "ipv6": "[IP]",
    "ipv4": "[IP]",
}


@dataclass(frozen=True, slots=True)
class Finding:
    """One detected span of the original text (``text[start:end]``)."""

    kind: str
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class _Detector:
    kind: str
    pattern: re.Pattern[str]
    valid: Callable[[str], bool] | None = None
    group: int = 0  # the group that is redacted (a ``password=`` rule keeps its name)
    before: str = ""  # characters that may not stand right before a match
    gate: str = ""  # a substring the text must contain for this detector to run
    digits: bool = False  # runs only inside runs of digits (``_DIGIT_RUN``)
    words: tuple[str, ...] = ()  # runs only if the lower-cased text has one of these


def _digits(text: str) -> str:
    return "".join(c for c in text if c.isdigit())


def luhn_ok(digits: str) -> bool:
    """The Luhn (mod 10) check of a card number's digits."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"  # (sum mod 11) -> check character


def cn_id_ok(text: str) -> bool:
    """An 18-character resident ID: a real birth date and its MOD 11-2 check digit."""
    if len(text) != 18 or not text[:17].isdigit():
        return False
    try:
        born = date(int(text[6:10]), int(text[10:12]), int(text[12:14]))
    except ValueError:
        return False
    if born.year < 1900 or born > date.today():
        return False
    total = sum(int(c) * w for c, w in zip(text[:17], _ID_WEIGHTS, strict=True))
    return _ID_CHECK[total % 11] == text[17].upper()


_CARD_PREFIX = re.compile(
    r"4|5[1-5]|2(?:2[2-9][1-9]|2[3-9]\d|[3-6]\d\d|7[01]\d|720)|3[47]|6011|64[4-9]|65"
    r"|35(?:2[89]|[3-8]\d)|30[0-5]|3[689]|62"
)


def card_ok(text: str) -> bool:
    digits = _digits(text)
    return 13 <= len(digits) <= 19 and bool(_CARD_PREFIX.match(digits)) and luhn_ok(digits)


def _phone_ok(text: str) -> bool:
    return 8 <= len(_digits(text)) <= 15


def _ip_ok(text: str) -> bool:
    try:
        addr = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return False
    return not (addr.is_loopback or addr.is_unspecified)


def _entropy(text: str) -> float:
    counts: dict[str, int] = {}
    for c in text:
        counts[c] = counts.get(c, 0) + 1
    n = len(text)
    return -sum(k / n * math.log2(k / n) for k in counts.values())


def _random_token(text: str) -> bool:
    """A long token that looks random: mixed case and digits, or long hex, high entropy."""
    body = text.rstrip("=")
    if re.fullmatch(r"[0-9a-fA-F]+", body):
        return len(body) >= 32 and any(c.isdigit() for c in body) and _entropy(body) > 3.0
    mixed = (
        any(c.islower() for c in body)
        and any(c.isupper() for c in body)
        and any(c.isdigit() for c in body)
    )
    return mixed and _entropy(body) > 4.0


_TOKEN_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_+/=-"
_NOT_TOKEN_AFTER = r"(?![A-Za-z0-9_+/=-])"
_ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_DIGITS = "0123456789"

# Each pattern starts with a literal or a character class, so the regex engine skips
# ahead to candidate positions quickly; what may not stand right before a match is
# checked in Python (``before``) instead of by a leading lookbehind, which would make the
# engine try every position. ``gate``: a substring the text must contain at all.
_DETECTORS: tuple[_Detector, ...] = (
    _Detector(
        "api_key",
        re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----"),
        gate="-----BEGIN",
    ),
    _Detector(
        "api_key",
        re.compile(
            r"(?:sk-(?:proj-|ant-)?[A-Za-z0-9_-]{16,}|(?:AKIA|ASIA)[0-9A-Z]{16}"
            r"|gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{22,}|xox[abprs]-[A-Za-z0-9-]{10,}"
            r"|AIza[0-9A-Za-z_-]{35}|hf_[A-Za-z0-9]{30,}"
            r"|eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,})" + _NOT_TOKEN_AFTER
        ),
        before=_TOKEN_CHARS,
    ),
    _Detector(
        "api_key",
        re.compile(
            r"(?i)(?:api[_-]?key|secret|access[_-]?token|auth[_-]?token"
            r"|password|passwd)[\"']?\s*[:=]\s*[\"']?([^\s\"',;]{8,})"
        ),
        group=1,
        before=_ALNUM,
        words=("key", "secret", "token", "passw"),
    ),
    _Detector(
        "api_key",
        re.compile(r"[A-Za-z0-9_+/-]{32,}={0,2}" + _NOT_TOKEN_AFTER),
        _random_token,
        before=_TOKEN_CHARS,
    ),
    _Detector(
        "email",
        re.compile(
            r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}(?![A-Za-z])"
        ),
        before="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._%+-",
        gate="@",
    ),
    _Detector(
        "cn_id",
        re.compile(r"\d{17}[0-9Xx](?![0-9A-Za-z])"),
        cn_id_ok,
        before=_ALNUM,
        digits=True,
    ),
    _Detector(
        "card",
        re.compile(r"\d(?:[ -]?\d){12,18}(?![\d]|[.-]\d)"),
        card_ok,
        before=_DIGITS + ".-",
        digits=True,
    ),
    _Detector(
        "cn_mobile",
        re.compile(r"(?:\+?86[ -]?)?1[3-9]\d[ -]?\d{4}[ -]?\d{4}(?!\d)"),
        before=_DIGITS + "+",
        digits=True,
    ),
    _Detector(
        "phone",
        re.compile(r"\+\d{1,3}(?:[ .-]?\(\d{1,4}\))?(?:[ .-]?\d{1,5}){1,5}(?!\d)"),
        _phone_ok,
        before=_ALNUM + "_+",
        gate="+",
        digits=True,
    ),
    _Detector(
        "phone",
        re.compile(r"(?:\(\d{3}\) ?|\d{3}[ .-])\d{3}[ .-]\d{4}(?!\d)"),
        _phone_ok,
        before=_ALNUM + "_(",
        digits=True,
    ),
    _Detector(
        "phone",
        re.compile(r"0\d{1,4}[ -](?:\d{3,4}[ -]\d{3,4}|\d{6,8})(?!\d)"),
        _phone_ok,
        before=_ALNUM + "_+-",
        digits=True,
    ),
    _Detector(
        "ipv6",
        re.compile(
            r"(?:[0-9A-Fa-f]{0,4}:){2,7}(?:(?:\d{1,3}\.){3}\d{1,3}|[0-9A-Fa-f]{1,4})?"
            r"(?:%[A-Za-z0-9]+)?(?![\w:]|\.\d)"
        ),
        _ip_ok,
        before=_ALNUM + "_:.",
        gate=":",
    ),
    _Detector(
        "ipv4",
        re.compile(r"(?:\d{1,3}\.){3}\d{1,3}(?!\d|\.\d)"),
        _ip_ok,
        before=_DIGITS + ".",
        gate=".",
        digits=True,
    ),
)

# Where the digit-based detectors can match: runs of digits and separators holding at
# least 4 digits (an IPv4 address has 4). Scanning only these keeps prose fast.
_DIGIT_RUN = re.compile(r"[+(]?\d(?:[ ().+Xx-]*\d){3,}[ ().+Xx-]*")


def _windows(text: str) -> list[tuple[int, int]]:
    n = len(text)
    return [(m.start(), min(n, m.end() + 1)) for m in _DIGIT_RUN.finditer(text)]  # +1: lookahead


def find_pii(text: str) -> list[Finding]:
    """Every PII span of ``text``, in text order, non-overlapping."""
    claimed: list[Finding] = []
    windows: list[tuple[int, int]] | None = None
    lowered: str | None = None
    for det in _DETECTORS:
        if det.gate and det.gate not in text:
            continue
        if det.words:
            lowered = text.lower() if lowered is None else lowered
            if not any(w in lowered for w in det.words):
                continue
        if det.digits:
            windows = _windows(text) if windows is None else windows
            spans = windows
        else:
            spans = [(0, len(text))]
        for pos, endpos in spans:
            for m in det.pattern.finditer(text, pos, endpos):
                if m.start() > 0 and text[m.start() - 1] in det.before:
                    continue
                start, end = m.span(det.group)
                if start == end or any(start < f.end and f.start < end for f in claimed):
                    continue
                if det.valid is not None and not det.valid(m.group(det.group)):
                    continue
                claimed.append(Finding(det.kind, start, end))
    return sorted(claimed, key=lambda f: f.start)


def redact(text: str) -> str:
    """``text`` with every PII span replaced by its label (``[EMAIL]``, ``[CN_ID]``, ...)."""
    findings = find_pii(text)
    if not findings:
        return text
    out: list[str] = []
    pos = 0
    for f in findings:
        out += [text[pos : f.start], LABELS[f.kind]]
        pos = f.end
    out.append(text[pos:])
    return "".join(out)


class RedactingFilter(logging.Filter):
    """Redacts PII in a record's message and string extras before any handler formats it.

    Installed on the server's log handler, so a library that logs a client-supplied value
    (a header, a path) does not leak an e-mail address or a key into the logs.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        for name, value in list(vars(record).items()):
            if name not in _RECORD_FIELDS and isinstance(value, str):
                setattr(record, name, redact(value))
        return True


_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message"}
