"""The card's title and a short description of the model, read from its headings and prose."""

from __future__ import annotations

import re
from typing import Final

from app.catalog.model_card.document import TEXT_LINE, CardDocument, clean_inline

_MAX_DESCRIPTION_CHARS: Final = 500
_MAX_DESCRIPTION_CANDIDATES: Final = 60

_DESCRIPTION_HEADINGS: Final = frozenset({"description", "model description"})

# Paragraphs that are never a card's description: hub page chrome and TheBloke's fixed header.
_BOILERPLATE: Final[tuple[re.Pattern[str], ...]] = (
    re.compile(r"edit model card", re.IGNORECASE),
    re.compile(r"generously supported by a grant", re.IGNORECASE),
    re.compile(r"^(?:model creator|original model|quanti[sz]ed by)\b", re.IGNORECASE),
    re.compile(r"^(?:downloads last month|model size|tensor type|inference (?:api|examples))\b", re.I),
    re.compile(r"^(?:thank you|thanks)\b", re.IGNORECASE),
)

_STRUCTURAL: Final = re.compile(r"\s*(?:[-*+•]\s|\d{1,3}[.)]\s|[|>]|<|!\[|\[!\[|```|~~~)")
_SENTENCE_END: Final = frozenset(".!?")


def find_title_and_description(doc: CardDocument) -> tuple[str | None, str | None]:
    """(title, description).

    The title is the first ``#`` heading, unless prose comes before it: then that "heading" is a
    code comment in page text ("# To use a different branch...") or a late section, not a title.
    """
    first_prose = _first_prose_paragraph(doc)
    heading = next((h for h in doc.headings if h.level == 1 and h.text), None)
    if heading is not None and (first_prose is None or heading.line < first_prose[0]):
        title: str | None = heading.text
    else:
        title = None
    description = _section_description(doc)
    if description is not None:
        return title, description
    if first_prose is None:
        return title, None
    line, text, previous = first_prose
    if title is None and not any(h.line < line for h in doc.headings) and previous is not None:
        # Page text keeps no heading markup: the card's title is the short line right before the
        # first sentence ("CausalLM 7B - GPTQ").
        title = _page_title(previous)
    return title, _shorten(text)


def _section_description(doc: CardDocument) -> str | None:
    """The text under a "Description" heading (or, in page text, a "Description" line)."""
    for heading in doc.headings:
        if heading.text.lower().rstrip(":") in _DESCRIPTION_HEADINGS:
            section = _prose_paragraphs(doc, heading.line + 1, doc.next_heading_after(heading.line))
            if section:
                return _join_description(section)
    for index, line in enumerate(doc.lines):
        if doc.kinds[index] == TEXT_LINE and line.strip().lower().rstrip(":") in _DESCRIPTION_HEADINGS:
            # A page has no section ends, so only the first paragraph is certainly the description.
            section = _prose_paragraphs(doc, index + 1, doc.next_heading_after(index))
            if section:
                return _shorten(section[0])
    return None


def _first_prose_paragraph(doc: CardDocument) -> tuple[int, str, list[str] | None] | None:
    """(first line, clean text, lines of the paragraph before it) of the first sentence-like
    paragraph that is not boilerplate."""
    candidates = doc.paragraphs(0, len(doc.lines))[:_MAX_DESCRIPTION_CANDIDATES]
    for position, (line, lines) in enumerate(candidates):
        text = _paragraph_text(lines)
        if text is not None and _is_prose(text):
            previous = candidates[position - 1][1] if position > 0 else None
            return line, text, previous
    return None


def _prose_paragraphs(doc: CardDocument, start: int, end: int) -> list[str]:
    texts = (_paragraph_text(lines) for _, lines in doc.paragraphs(start, end))
    return [text for text in texts if text]


def _paragraph_text(lines: list[str]) -> str | None:
    """The paragraph as one clean line, or None for lists, tables, HTML, images and boilerplate."""
    if _STRUCTURAL.match(lines[0]):
        return None
    text = clean_inline(" ".join(line.strip() for line in lines))
    if not text or any(pattern.search(text) for pattern in _BOILERPLATE):
        return None
    return text


def _is_prose(text: str) -> bool:
    # Headings that a web page flattened into plain lines ("CausalLM 7B - GPTQ") are short and
    # lack sentence punctuation; a description is a sentence.
    words = len(text.split())
    return words >= 12 or (words >= 3 and text[-1] in _SENTENCE_END)


def _page_title(lines: list[str]) -> str | None:
    if len(lines) != 1:
        return None
    text = clean_inline(lines[0])
    if not text or len(text) > 120 or text[-1] in ".!?:;,":
        return None
    if any(pattern.search(text) for pattern in _BOILERPLATE):
        return None
    return text


def _join_description(paragraphs: list[str]) -> str:
    text = paragraphs[0]
    for extra in paragraphs[1:]:
        if len(text) + 1 + len(extra) > _MAX_DESCRIPTION_CHARS:
            break
        text = f"{text}\n\n{extra}"
    return _shorten(text)


def _shorten(text: str) -> str:
    if len(text) <= _MAX_DESCRIPTION_CHARS:
        return text
    cut = text[: _MAX_DESCRIPTION_CHARS - 1]
    space = cut.rfind(" ")
    if space > _MAX_DESCRIPTION_CHARS // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:") + "…"
