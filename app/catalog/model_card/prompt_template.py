"""The prompt template a card names (a heading or label) and/or shows (a code block).

Template names and the signatures that identify an unnamed template are data tables below.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from app.catalog.model_card.card_types import CardTemplate
from app.catalog.model_card.document import (
    CODE_LINE,
    FENCE_LINE,
    NON_ALNUM,
    TEXT_LINE,
    CardDocument,
    clean_inline,
)

_MAX_TEMPLATE_LINES: Final = 200
_MAX_LABEL_CHARS: Final = 80

# Template label as a card states it (compacted: lowercase, alphanumerics only) -> canonical
# QuantDesk template name. "None" on a TheBloke card means "no template: raw text".
_TEMPLATE_NAME_BY_LABEL: Final[Mapping[str, str]] = {
    "none": "Raw",
    "raw": "Raw",
    "vicuna": "Vicuna",
    "vicuna11": "Vicuna",
    "vicunav11": "Vicuna",
    "vicunashort": "Vicuna",
    "alpaca": "Alpaca",
    "alpacainstructonly": "Alpaca",
    "alpacacot": "Alpaca-CoT",
    "guanaco": "Guanaco",
    "chatml": "ChatML",
    "llama2chat": "Llama-2-chat",
}

# When a card shows a template without naming it: the substrings that identify each format, most
# specific first (Alpaca-CoT is Alpaca with a fixed response prefix, so it must be tried first).
_TEMPLATE_SIGNATURES: Final[tuple[tuple[str, tuple[str, ...]], ...]] = (
    ("ChatML", ("<|im_start|>",)),
    ("Llama-2-chat", ("[INST]",)),
    ("Alpaca-CoT", ("### Instruction:", "### Response: Let's think step by step")),
    ("Alpaca", ("### Instruction:", "### Response:")),
    ("Guanaco", ("### Human:",)),
    ("Vicuna", ("USER:", "ASSISTANT:")),
)
# A template that is only the placeholder means the prompt is sent as is.
_RAW_TEMPLATE: Final = re.compile(r"\s*\{prompt\}\s*")
_RAW_TEMPLATE_NAME: Final = "Raw"

_TEMPLATE_HEADING: Final = re.compile(r"prompt[ -]?template\b\s*:?\s*(.*)", re.IGNORECASE)
_PAGE_TEMPLATE_LABEL: Final = re.compile(r"prompt[ -]?template\s*:\s*(\S.*)", re.IGNORECASE)
_PAGE_TEMPLATE_BARE: Final = re.compile(r"prompt[ -]?template\s*:?", re.IGNORECASE)


def find_template(doc: CardDocument, metadata: Mapping[str, Any]) -> CardTemplate | None:
    """The template the body names and/or shows, else the front matter's ``prompt_template``."""
    found = _markdown_template(doc)
    if found is None:
        found = _page_template(doc)
    label, text = found if found is not None else (None, None)
    if text is None:
        # Front matter may carry the template (TheBloke's `prompt_template:`) when the body shows
        # none. YAML folds its line breaks into spaces ('{prompt}\n' reads as "{prompt} "), so the
        # outer whitespace is an artefact, not part of the template.
        front = metadata.get("prompt_template")
        if isinstance(front, str) and front.strip():
            text = front.strip()
    if label is not None:
        return CardTemplate(label=label, name=_template_name(label), text=text)
    if text is not None:
        recognised = _recognise_template(text)
        # The card names nothing: the label is what was recognised, or "" when nothing was.
        return CardTemplate(label=recognised or "", name=recognised, text=text)
    return None


def _markdown_template(doc: CardDocument) -> tuple[str | None, str | None] | None:
    """(label, text) from a "## Prompt template: X" heading and the code block under it."""
    for heading in doc.headings:
        match = _TEMPLATE_HEADING.fullmatch(heading.text)
        if match is None:
            continue
        label = match.group(1).strip() or None
        end = doc.next_heading_after(heading.line)
        return _clip_label(label), _code_block(doc, heading.line + 1, end)
    return None


def _code_block(doc: CardDocument, start: int, end: int) -> str | None:
    """Text of the first fenced code block that opens in ``[start, end)``."""
    opening = next((i for i in range(start, end) if doc.kinds[i] == FENCE_LINE), None)
    if opening is None:
        return None
    body: list[str] = []
    for index in range(opening + 1, len(doc.lines)):
        if doc.kinds[index] != CODE_LINE:
            break
        body.append(doc.lines[index])
    text = "\n".join(body).strip("\n")
    return text or None


def _page_template(doc: CardDocument) -> tuple[str | None, str | None] | None:
    """(label, text) from page text: "Prompt template: X", or "Prompt template" then the text."""
    lines = doc.lines
    for index, line in enumerate(lines):
        if doc.kinds[index] != TEXT_LINE or "emplate" not in line or len(line) > 200:
            continue
        cleaned = clean_inline(line)
        labelled = _PAGE_TEMPLATE_LABEL.fullmatch(cleaned)
        if labelled:
            # Pages often drop the code block; only a following paragraph that looks like a
            # template (has the placeholder or a known signature) is taken as its text.
            following = _following_paragraph(lines, index + 1)
            looks_like_template = following is not None and (
                "{prompt}" in following or _recognise_template(following) is not None
            )
            return _clip_label(labelled.group(1).strip()), following if looks_like_template else None
        if _PAGE_TEMPLATE_BARE.fullmatch(cleaned):
            return None, _following_paragraph(lines, index + 1)
    return None


def _following_paragraph(lines: tuple[str, ...], start: int) -> str | None:
    """Lines from the first non-blank line at or after ``start`` up to the next blank line."""
    taken: list[str] = []
    for line in lines[start : start + _MAX_TEMPLATE_LINES]:
        if not line.strip():
            if taken:
                break
            continue
        taken.append(line.rstrip())
    return "\n".join(taken) or None


def _clip_label(label: str | None) -> str | None:
    # A "label" longer than this is a sentence that happens to follow "Prompt template:".
    return label if label is not None and len(label) <= _MAX_LABEL_CHARS else None


def _template_name(label: str) -> str | None:
    return _TEMPLATE_NAME_BY_LABEL.get(NON_ALNUM.sub("", label.lower()))


def _recognise_template(text: str) -> str | None:
    if _RAW_TEMPLATE.fullmatch(text):
        return _RAW_TEMPLATE_NAME
    return next(
        (name for name, needles in _TEMPLATE_SIGNATURES if all(needle in text for needle in needles)),
        None,
    )
