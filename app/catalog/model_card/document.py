"""The card body as a document: front matter, lines, fenced code, headings and inline text.

The body is split into lines once, each line marked as ordinary text, a fence or code inside a
fence, and the headings located, so the parts that look for a title, a table or a template all
agree on what is code and what is a heading.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from typing import Any, Final

import yaml

_MAX_FRONT_MATTER_CHARS: Final = 200_000
_MAX_INLINE_CHARS: Final = 4_000

# Regular expressions. Character classes exclude their own delimiters so every pattern stays
# linear on garbage input (no nested or overlapping quantifiers).
_FENCE_OPEN: Final = re.compile(r" {0,3}(`{3,}|~{3,})")
_HEADING: Final = re.compile(r" {0,3}(#{1,6})(?=[ \t]|$)")
_IMAGE: Final = re.compile(r"!\[[^\[\]\n]*\]\([^()\n]*\)")
_LINK: Final = re.compile(r"\[([^\[\]\n]*)\]\([^()\n]*\)")
_REF_LINK: Final = re.compile(r"\[([^\[\]\n]*)\]\[[^\[\]\n]*\]")
_HTML_TAG: Final = re.compile(r"<[^<>\n]*>")
_BOLD: Final = re.compile(r"(\*\*|__)([^*_\n]+)\1")
_ITALIC: Final = re.compile(r"(?<![\w*])\*([^*\n]+)\*(?![\w*])|(?<!\w)_([^_\n]+)_(?!\w)")
_SPACES: Final = re.compile(r"\s+")

# Runs of anything but lowercase alphanumerics: how table headers and template labels are normalised.
NON_ALNUM: Final = re.compile(r"[^a-z0-9]+")

# What a line of the body is (CardDocument.kinds).
TEXT_LINE: Final = 0  # ordinary line
FENCE_LINE: Final = 1  # opening or closing ``` / ~~~ line
CODE_LINE: Final = 2  # inside a fenced block


@dataclass(frozen=True)
class Heading:
    """A ``#`` heading: its line index, level (1-6) and plain text."""

    line: int
    level: int
    text: str  # inline markdown removed


@dataclass(frozen=True)
class CardDocument:
    """The card body split into lines, with fenced code and headings located once."""

    lines: tuple[str, ...]
    kinds: tuple[int, ...]
    headings: tuple[Heading, ...]

    @classmethod
    def parse(cls, body: str) -> CardDocument:
        """Split ``body`` into lines and mark fences, code and headings (one pass)."""
        lines = tuple(body.split("\n"))
        kinds: list[int] = []
        headings: list[Heading] = []
        fence: str | None = None
        for index, line in enumerate(lines):
            if fence is not None:
                closing = line.strip()
                if closing and closing[0] == fence[0] and closing.count(fence[0]) == len(closing):
                    is_close = len(closing) >= len(fence)
                else:
                    is_close = False
                kinds.append(FENCE_LINE if is_close else CODE_LINE)
                if is_close:
                    fence = None
                continue
            opening = _FENCE_OPEN.match(line)
            if opening:
                fence = opening.group(1)
                kinds.append(FENCE_LINE)
                continue
            kinds.append(TEXT_LINE)
            heading = _HEADING.match(line)
            if heading:
                headings.append(Heading(index, len(heading.group(1)), _heading_text(line, heading)))
        return cls(lines, tuple(kinds), tuple(headings))

    def next_heading_after(self, line: int) -> int:
        """Index of the first heading line after ``line``, or the line count."""
        # Binary search: a garbage "card" can have hundreds of thousands of "headings".
        position = bisect.bisect_right(self.headings, line, key=lambda h: h.line)
        return self.headings[position].line if position < len(self.headings) else len(self.lines)

    def is_heading(self, line: int) -> bool:
        """Whether line ``line`` is a ``#`` heading outside fenced code."""
        return self.kinds[line] == TEXT_LINE and _HEADING.match(self.lines[line]) is not None

    def paragraphs(self, start: int, end: int) -> list[tuple[int, list[str]]]:
        """Blocks of consecutive ordinary lines in ``[start, end)`` as (first line, lines).

        Blank lines, headings and code blocks all end a paragraph.
        """
        found: list[tuple[int, list[str]]] = []
        current: list[str] = []
        first = start
        for index in range(start, min(end, len(self.lines))):
            line = self.lines[index]
            if self.kinds[index] != TEXT_LINE or not line.strip() or self.is_heading(index):
                if current:
                    found.append((first, current))
                    current = []
                continue
            if not current:
                first = index
            current.append(line)
        if current:
            found.append((first, current))
        return found


def _heading_text(line: str, match: re.Match[str]) -> str:
    content = line[match.end() :].strip()
    # An ATX heading may be closed by a run of '#' after a space: "## Title ##".
    without_close = content.rstrip("#")
    if without_close != content and (not without_close or without_close[-1] in " \t"):
        content = without_close.rstrip()
    return clean_inline(content)


def split_front_matter(text: str) -> tuple[dict[str, Any], str]:
    """(metadata, body). Metadata is {} unless a leading ``---`` block holds a YAML mapping."""
    stripped = text.lstrip("\ufeff")
    lines = stripped.split("\n")
    if not lines or lines[0].rstrip() != "---":
        return {}, text
    closing = next((i for i in range(1, len(lines)) if lines[i].rstrip() in ("---", "...")), None)
    if closing is None:  # unbalanced: the "---" was a horizontal rule, not front matter
        return {}, text
    body = "\n".join(lines[closing + 1 :])
    source = "\n".join(lines[1:closing])
    if len(source) > _MAX_FRONT_MATTER_CHARS:
        return {}, body
    try:
        loaded = yaml.safe_load(source)
    except Exception:  # invalid YAML (or absurd nesting): the card still has a body worth reading
        return {}, body
    if not isinstance(loaded, dict):
        return {}, body
    return {str(key): value for key, value in loaded.items()}, body


def clean_inline(text: str) -> str:
    """Plain text of one line of inline markdown: links become their text, markup goes."""
    text = text[:_MAX_INLINE_CHARS]
    text = _IMAGE.sub("", text)
    text = _LINK.sub(r"\1", text)
    text = _REF_LINK.sub(r"\1", text)
    text = _HTML_TAG.sub("", text)
    text = _BOLD.sub(r"\2", text)
    text = _ITALIC.sub(lambda m: m.group(1) or m.group(2) or "", text)
    text = text.replace("`", "")
    return _SPACES.sub(" ", text).strip()
