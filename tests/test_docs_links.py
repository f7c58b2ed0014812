"""Every relative link in README.md and docs/**/*.md points at a file (and heading) that exists.

A newcomer's first click is a README link; a dead one reads as an abandoned project. This
test reads the Markdown only (no network): external links (``http:``, ``mailto:``) are
skipped, relative paths must resolve from the linking file, and ``#anchor`` fragments must
match a heading of the target page, slugged the way GitHub renders them.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])

# [text](target) and [text](target "title"); images ![alt](src) match too. Reference-style
# definitions `[id]: target` are handled by REF_DEF.
INLINE_LINK = re.compile(r"!?\[(?:[^\]\\]|\\.)*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REF_DEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$", re.MULTILINE)
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.+?)\s*#*\s*$", re.MULTILINE)
FENCE = re.compile(r"^\s{0,3}(```|~~~).*?^\s{0,3}\1\s*$", re.MULTILINE | re.DOTALL)
# A code span closes at the next run of exactly as many backticks as opened it (CommonMark).
INLINE_CODE = re.compile(r"(?<!`)(`+)(?!`)(.*?)(?<!`)\1(?!`)", re.DOTALL)
EXTERNAL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def strip_code(text: str) -> str:
    """Remove fenced blocks and inline code, whose brackets are not links."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lowercase, punctuation dropped, spaces to hyphens.

    Inline markup is rendered first (links keep their text, code its content), so
    ``## The `plan` field`` becomes ``the-plan-field``.
    """
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = text.replace("`", "").replace("*", "")
    text = text.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """All heading anchors of a page, with GitHub's ``-1``, ``-2`` suffixes for repeats."""
    seen: dict[str, int] = {}
    out: set[str] = set()
    without_code = FENCE.sub("", page.read_text(encoding="utf-8"))
    for match in HEADING.finditer(without_code):
        slug = github_slug(match.group(2))
        count = seen.get(slug, 0)
        out.add(slug if count == 0 else f"{slug}-{count}")
        seen[slug] = count + 1
    return out


def links(page: Path) -> list[str]:
    """Every link target written in a page, outside code."""
    text = strip_code(page.read_text(encoding="utf-8"))
    return [m.group(1) for m in INLINE_LINK.finditer(text)] + [
        m.group(1) for m in REF_DEF.finditer(text)
    ]


def broken_links(page: Path, root: Path = ROOT) -> list[str]:
    """The relative links of a page whose file or anchor does not exist, with the reason.

    Paths in the messages are relative to ``root``.
    """
    problems: list[str] = []
    for target in links(page):
        if EXTERNAL.match(target):
            continue
        path_part, _, fragment = target.partition("#")
        resolved = (page.parent / path_part).resolve() if path_part else page
        if not resolved.exists():
            problems.append(f"{target}: no such file {resolved.relative_to(root)}")
            continue
        is_page = resolved.is_file() and resolved.suffix == ".md"
        if fragment and is_page and fragment not in anchors(resolved):
            problems.append(f"{target}: no heading #{fragment} in {resolved.name}")
    return problems


def test_there_are_pages_to_check() -> None:
    assert ROOT / "README.md" in PAGES
    assert len(PAGES) > 5


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page: Path) -> None:
    assert broken_links(page) == []


@pytest.mark.parametrize(
    ("heading", "slug"),
    [
        ("Set-up times", "set-up-times"),
        ("Scale (measured)", "scale-measured"),
        ("The `plan` field", "the-plan-field"),
        ("1. Who uses it and how", "1-who-uses-it-and-how"),
        ("KServe → deepseek-k8s", "kserve--deepseek-k8s"),
        ("See [api](api.md)", "see-api"),
    ],
)
def test_github_slug(heading: str, slug: str) -> None:
    assert github_slug(heading) == slug


def test_checker_catches_a_dead_link_and_a_dead_anchor(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("# Real heading\n\n## Twice\n\n## Twice\n")
    page = tmp_path / "page.md"
    page.write_text(
        "[ok](other.md#real-heading) [ok2](other.md#twice-1) [ext](https://x.invalid/y)\n"
        "[gone](missing.md) [bad](other.md#nope) `[code](not-a-link.md)` ``[x](`y`.md)``\n"
        "```\n[fenced](also-not.md)\n```\n"
    )
    assert broken_links(page, root=tmp_path) == [
        "missing.md: no such file missing.md",
        "other.md#nope: no heading #nope in other.md",
    ]
