"""Facts a model card (the repo's README.md) states: the branch table and the prompt template.

The card is untrusted text written for humans, so :func:`parse_model_card` reads it leniently and
never raises: whatever it cannot read is simply absent from the result. Two shapes are understood:

* markdown, as the repo's README.md holds it (YAML front matter, ``#`` headings, pipe tables,
  fenced code blocks) — the shape the app actually reads;
* the same card as a web page renders it (headings as plain lines, tables flattened to
  space-separated lines), which is what people copy and paste.

Column names, unit sizes, yes/no words, template names and template signatures are data tables
below, so a card that words things differently needs a new table entry, not new code.
"""

from __future__ import annotations

import bisect
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Final, TypeVar

import yaml


@dataclass(frozen=True)
class CardBranchRow:
    """One row of a TheBloke-style "Provided files" table."""

    branch: str
    bits: int | None = None
    group_size: int | None = None  # None when the card says "None" (or -1): no grouping
    act_order: bool | None = None
    damp_percent: float | None = None
    dataset: str | None = None
    seq_len: int | None = None
    size_bytes: int | None = None  # "40.66 GB" on the Hub means 40.66 * 10**9 bytes
    exllama: bool | None = None
    description: str = ""


@dataclass(frozen=True)
class CardTemplate:
    """The prompt template a card names and/or shows."""

    label: str  # exactly as the card states it, e.g. "None", "ChatML", "Vicuna"
    name: str | None  # canonical QuantDesk template name, None when not recognised
    text: str | None = None  # the template body the card shows, if any


@dataclass(frozen=True)
class ModelCard:
    """What QuantDesk reads from a model card."""

    title: str | None = None
    description: str | None = None
    rows: tuple[CardBranchRow, ...] = ()
    template: CardTemplate | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def row(self, branch: str) -> CardBranchRow | None:
        """The table row for ``branch``, or None when the card has none."""
        return next((r for r in self.rows if r.branch == branch), None)


# --------------------------------------------------------------------------------------------------
# Data tables
# --------------------------------------------------------------------------------------------------

# Real cards are tens of KB. Bounding the input keeps a hostile or corrupt "README" from making the
# catalog slow; nothing a card legitimately states lies that far in.
_MAX_CARD_CHARS: Final = 2_000_000
_MAX_FRONT_MATTER_CHARS: Final = 200_000
_MAX_DESCRIPTION_CHARS: Final = 500
_MAX_INLINE_CHARS: Final = 4_000
_MAX_ROW_LINE_CHARS: Final = 4_000
_MAX_TEMPLATE_LINES: Final = 200
_MAX_LABEL_CHARS: Final = 80
_MAX_DESCRIPTION_CANDIDATES: Final = 60

# Table header (normalised: lowercase, runs of non-alphanumerics become one space) -> row field.
# "Damp %" normalises to "damp" and "desc_act" to "desc act".
_ROW_FIELD_BY_HEADER: Final[Mapping[str, str]] = {
    "branch": "branch",
    "bits": "bits",
    "wbits": "bits",
    "gs": "group_size",
    "group size": "group_size",
    "groupsize": "group_size",
    "act order": "act_order",
    "actorder": "act_order",
    "desc act": "act_order",
    "damp": "damp_percent",
    "damp percent": "damp_percent",
    "gptq dataset": "dataset",
    "dataset": "dataset",
    "calibration dataset": "dataset",
    "seq len": "seq_len",
    "seqlen": "seq_len",
    "sequence len": "seq_len",
    "sequence length": "seq_len",
    "size": "size_bytes",
    "file size": "size_bytes",
    "exllama": "exllama",
    "exllama compatibility": "exllama",
    "exllama compatible": "exllama",
    "desc": "description",
    "description": "description",
}

# Size units. The Hub (and TheBloke's tables) use SI units: "40.66 GB" is 40.66 * 10**9 bytes.
_BYTES_PER_UNIT: Final[Mapping[str, int]] = {
    "b": 1,
    "byte": 1,
    "bytes": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "pb": 10**15,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
    "pib": 2**50,
}

_BOOL_WORDS: Final[Mapping[str, bool]] = {
    "yes": True,
    "y": True,
    "true": True,
    "✓": True,
    "✔": True,
    "✅": True,
    "no": False,
    "n": False,
    "false": False,
    "✗": False,
    "✘": False,
    "❌": False,
}

# Group-size cells that mean "no grouping" (GPTQ's group_size -1).
_NO_GROUP_WORDS: Final = frozenset({"", "none", "-1", "-", "n/a", "na", "no"})

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

_DESCRIPTION_HEADINGS: Final = frozenset({"description", "model description"})

# Paragraphs that are never a card's description: hub page chrome and TheBloke's fixed header.
_BOILERPLATE: Final[tuple[re.Pattern[str], ...]] = (
    re.compile(r"edit model card", re.IGNORECASE),
    re.compile(r"generously supported by a grant", re.IGNORECASE),
    re.compile(r"^(?:model creator|original model|quanti[sz]ed by)\b", re.IGNORECASE),
    re.compile(r"^(?:downloads last month|model size|tensor type|inference (?:api|examples))\b", re.I),
    re.compile(r"^(?:thank you|thanks)\b", re.IGNORECASE),
)

# --------------------------------------------------------------------------------------------------
# Regular expressions. Character classes exclude their own delimiters so every pattern stays
# linear on garbage input (no nested or overlapping quantifiers).
# --------------------------------------------------------------------------------------------------

_FENCE_OPEN: Final = re.compile(r" {0,3}(`{3,}|~{3,})")
_HEADING: Final = re.compile(r" {0,3}(#{1,6})(?=[ \t]|$)")
_IMAGE: Final = re.compile(r"!\[[^\[\]\n]*\]\([^()\n]*\)")
_LINK: Final = re.compile(r"\[([^\[\]\n]*)\]\([^()\n]*\)")
_REF_LINK: Final = re.compile(r"\[([^\[\]\n]*)\]\[[^\[\]\n]*\]")
_HTML_TAG: Final = re.compile(r"<[^<>\n]*>")
_BOLD: Final = re.compile(r"(\*\*|__)([^*_\n]+)\1")
_ITALIC: Final = re.compile(r"(?<![\w*])\*([^*\n]+)\*(?![\w*])|(?<!\w)_([^_\n]+)_(?!\w)")
_SPACES: Final = re.compile(r"\s+")
_NON_ALNUM: Final = re.compile(r"[^a-z0-9]+")
_STRUCTURAL: Final = re.compile(r"\s*(?:[-*+•]\s|\d{1,3}[.)]\s|[|>]|<|!\[|\[!\[|```|~~~)")
_SENTENCE_END: Final = frozenset(".!?")

_INT: Final = re.compile(r"[+-]?\d{1,15}")
_BITS: Final = re.compile(r"(\d{1,3})\s*-?\s*(?:bits?)?", re.IGNORECASE)
_GROUP: Final = re.compile(r"(\d{1,9})\s*g?", re.IGNORECASE)
_FLOAT: Final = re.compile(r"[+-]?(?:\d{1,15}(?:\.\d{0,15})?|\.\d{1,15})(?:[eE][+-]?\d{1,3})?")
_SIZE: Final = re.compile(r"(\d{1,15}(?:\.\d{1,15})?)\s*([A-Za-z]{1,5})")

_TEMPLATE_HEADING: Final = re.compile(r"prompt[ -]?template\b\s*:?\s*(.*)", re.IGNORECASE)
_PAGE_TEMPLATE_LABEL: Final = re.compile(r"prompt[ -]?template\s*:\s*(\S.*)", re.IGNORECASE)
_PAGE_TEMPLATE_BARE: Final = re.compile(r"prompt[ -]?template\s*:?", re.IGNORECASE)

# A flattened "Provided files" table, as a web page renders it. Header (normalised like table
# headers above), then rows: the dataset may contain spaces, so it is matched lazily up to
# "<seq len> <size> <unit>"; the description is the rest of the line.
_PAGE_TABLE_HEADER: Final = re.compile(
    r"branch bits (?:gs|group ?size) act ?order damp(?: percent)? (?:gptq )?dataset"
    r" seq(?:uence)? ?len(?:gth)? size exllama(?: compatibility)? desc(?:ription)?"
)
_PAGE_TABLE_ROW: Final = re.compile(
    r"(?P<branch>\S+)\s+(?P<bits>\d{1,3})\s+(?P<group_size>\S+)\s+(?P<act_order>\S+)"
    r"\s+(?P<damp_percent>\S+)\s+(?P<dataset>\S.*?)\s+(?P<seq_len>\d{1,9})"
    r"\s+(?P<size_bytes>\d{1,15}(?:\.\d{1,15})?\s*(?:[KkMmGgTtPp]i?)?[Bb])"
    r"\s+(?P<exllama>\S+)(?:\s+(?P<description>.*))?"
)

_T = TypeVar("_T")


# --------------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------------


def parse_model_card(text: str) -> ModelCard:
    """Parse a model card (markdown README or web-page text) into a :class:`ModelCard`.

    Never raises: empty, binary or malformed input gives an empty or partial card. Bytes are
    decoded as UTF-8 with replacement; input beyond 2 million characters is ignored.
    """
    try:
        return _parse(_as_text(text))
    except Exception:  # each part below guards itself; this is the last line of defence
        return ModelCard()


def _parse(text: str) -> ModelCard:
    text = text[:_MAX_CARD_CHARS].replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        return ModelCard()
    empty: dict[str, Any] = {}
    metadata, body = _guarded(lambda: _split_front_matter(text), (empty, text))
    doc = _guarded(lambda: _Doc.parse(body), None)
    if doc is None:
        return ModelCard(metadata=metadata)
    no_text: tuple[str | None, str | None] = (None, None)
    no_rows: tuple[CardBranchRow, ...] = ()
    title, description = _guarded(lambda: _find_title_and_description(doc), no_text)
    rows = _guarded(lambda: _find_markdown_rows(doc) or _find_page_rows(doc), no_rows)
    template = _guarded(lambda: _find_template(doc, metadata), None)
    return ModelCard(
        title=title,
        description=description,
        rows=rows,
        template=template,
        metadata=metadata,
    )


def _guarded(compute: Callable[[], _T], default: _T) -> _T:
    """``compute()``, or ``default`` when it fails: one unreadable part must not cost the rest."""
    try:
        return compute()
    except Exception:  # untrusted input: any failure means "this part could not be read"
        return default


def _as_text(text: object) -> str:
    # Callers sometimes hand over a file's raw bytes; anything else is not a card at all.
    if isinstance(text, str):
        return text
    if isinstance(text, bytes | bytearray):
        return bytes(text).decode("utf-8", errors="replace")
    return ""


# --------------------------------------------------------------------------------------------------
# Document structure
# --------------------------------------------------------------------------------------------------

_TEXT: Final = 0  # ordinary line
_FENCE: Final = 1  # opening or closing ``` / ~~~ line
_CODE: Final = 2  # inside a fenced block


@dataclass(frozen=True)
class _Heading:
    line: int
    level: int
    text: str  # inline markdown removed


@dataclass(frozen=True)
class _Doc:
    """The card body split into lines, with fenced code and headings located once."""

    lines: tuple[str, ...]
    kinds: tuple[int, ...]
    headings: tuple[_Heading, ...]

    @classmethod
    def parse(cls, body: str) -> _Doc:
        lines = tuple(body.split("\n"))
        kinds: list[int] = []
        headings: list[_Heading] = []
        fence: str | None = None
        for index, line in enumerate(lines):
            if fence is not None:
                closing = line.strip()
                if closing and closing[0] == fence[0] and closing.count(fence[0]) == len(closing):
                    is_close = len(closing) >= len(fence)
                else:
                    is_close = False
                kinds.append(_FENCE if is_close else _CODE)
                if is_close:
                    fence = None
                continue
            opening = _FENCE_OPEN.match(line)
            if opening:
                fence = opening.group(1)
                kinds.append(_FENCE)
                continue
            kinds.append(_TEXT)
            heading = _HEADING.match(line)
            if heading:
                headings.append(_Heading(index, len(heading.group(1)), _heading_text(line, heading)))
        return cls(lines, tuple(kinds), tuple(headings))

    def next_heading_after(self, line: int) -> int:
        """Index of the first heading line after ``line``, or the line count."""
        # Binary search: a garbage "card" can have hundreds of thousands of "headings".
        position = bisect.bisect_right(self.headings, line, key=lambda h: h.line)
        return self.headings[position].line if position < len(self.headings) else len(self.lines)

    def is_heading(self, line: int) -> bool:
        return self.kinds[line] == _TEXT and _HEADING.match(self.lines[line]) is not None

    def paragraphs(self, start: int, end: int) -> list[tuple[int, list[str]]]:
        """Blocks of consecutive ordinary lines in ``[start, end)`` as (first line, lines).

        Blank lines, headings and code blocks all end a paragraph.
        """
        found: list[tuple[int, list[str]]] = []
        current: list[str] = []
        first = start
        for index in range(start, min(end, len(self.lines))):
            line = self.lines[index]
            if self.kinds[index] != _TEXT or not line.strip() or self.is_heading(index):
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
    return _clean_inline(content)


# --------------------------------------------------------------------------------------------------
# Front matter, title, description
# --------------------------------------------------------------------------------------------------


def _split_front_matter(text: str) -> tuple[dict[str, Any], str]:
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


def _find_title_and_description(doc: _Doc) -> tuple[str | None, str | None]:
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


def _section_description(doc: _Doc) -> str | None:
    """The text under a "Description" heading (or, in page text, a "Description" line)."""
    for heading in doc.headings:
        if heading.text.lower().rstrip(":") in _DESCRIPTION_HEADINGS:
            section = _prose_paragraphs(doc, heading.line + 1, doc.next_heading_after(heading.line))
            if section:
                return _join_description(section)
    for index, line in enumerate(doc.lines):
        if doc.kinds[index] == _TEXT and line.strip().lower().rstrip(":") in _DESCRIPTION_HEADINGS:
            # A page has no section ends, so only the first paragraph is certainly the description.
            section = _prose_paragraphs(doc, index + 1, doc.next_heading_after(index))
            if section:
                return _shorten(section[0])
    return None


def _first_prose_paragraph(doc: _Doc) -> tuple[int, str, list[str] | None] | None:
    """(first line, clean text, lines of the paragraph before it) of the first sentence-like
    paragraph that is not boilerplate."""
    candidates = doc.paragraphs(0, len(doc.lines))[:_MAX_DESCRIPTION_CANDIDATES]
    for position, (line, lines) in enumerate(candidates):
        text = _paragraph_text(lines)
        if text is not None and _is_prose(text):
            previous = candidates[position - 1][1] if position > 0 else None
            return line, text, previous
    return None


def _prose_paragraphs(doc: _Doc, start: int, end: int) -> list[str]:
    texts = (_paragraph_text(lines) for _, lines in doc.paragraphs(start, end))
    return [text for text in texts if text]


def _paragraph_text(lines: list[str]) -> str | None:
    """The paragraph as one clean line, or None for lists, tables, HTML, images and boilerplate."""
    if _STRUCTURAL.match(lines[0]):
        return None
    text = _clean_inline(" ".join(line.strip() for line in lines))
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
    text = _clean_inline(lines[0])
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


def _clean_inline(text: str) -> str:
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


# --------------------------------------------------------------------------------------------------
# Branch table
# --------------------------------------------------------------------------------------------------


def _find_markdown_rows(doc: _Doc) -> tuple[CardBranchRow, ...]:
    """Rows of the first pipe table with a "Branch" column that yields any row."""
    lines, kinds = doc.lines, doc.kinds
    index = 0
    while index + 1 < len(lines):
        header, separator = lines[index], lines[index + 1]
        is_table = (
            kinds[index] == _TEXT and kinds[index + 1] == _TEXT and "|" in header and _is_separator(separator)
        )
        if not is_table:
            index += 1
            continue
        columns = [_ROW_FIELD_BY_HEADER.get(_header_key(cell)) for cell in _split_cells(header)]
        end = index + 2
        while end < len(lines) and kinds[end] == _TEXT and "|" in lines[end] and lines[end].strip():
            end += 1
        if "branch" in columns:
            rows = [_row_from_cells(columns, _split_cells(line)) for line in lines[index + 2 : end]]
            found = tuple(row for row in rows if row is not None)
            if found:
                return found
        index = end
    return ()


def _split_cells(line: str) -> list[str]:
    """Cells of a pipe-table line; ``\\|`` is a literal pipe inside a cell."""
    inner = line.strip()
    if inner.startswith("|"):
        inner = inner[1:]
    if inner.endswith("|") and not inner.endswith("\\|"):
        inner = inner[:-1]
    return [cell.replace("\\|", "|").strip() for cell in re.split(r"(?<!\\)\|", inner)]


def _is_separator(line: str) -> bool:
    if "|" not in line or "-" not in line:
        return False
    cells = _split_cells(line)
    return all(cell.strip(":").strip("-") == "" and "-" in cell for cell in cells)


def _header_key(cell: str) -> str:
    return _NON_ALNUM.sub(" ", _clean_inline(cell).lower()).strip()


def _row_from_cells(columns: list[str | None], cells: list[str]) -> CardBranchRow | None:
    raw: dict[str, str] = {}
    # zip() drops cells beyond the header and leaves fields of missing cells unset.
    for name, cell in zip(columns, cells, strict=False):
        if name is not None and name not in raw:  # a repeated column: the first one wins
            raw[name] = _clean_inline(cell)
    return _build_row(raw)


def _find_page_rows(doc: _Doc) -> tuple[CardBranchRow, ...]:
    """Rows of a "Provided files" table that a web page flattened into space-separated lines."""
    lines = doc.lines
    for index, line in enumerate(lines):
        stripped = line.strip()
        if stripped[:6].lower() != "branch" or len(stripped) > 300:
            continue
        if not _PAGE_TABLE_HEADER.fullmatch(_NON_ALNUM.sub(" ", stripped.lower()).strip()):
            continue
        rows: list[CardBranchRow] = []
        for candidate in lines[index + 1 :]:
            text = candidate.strip()
            if not text and not rows:
                continue  # blank lines between the header and the first row
            match = _PAGE_TABLE_ROW.fullmatch(text) if len(text) <= _MAX_ROW_LINE_CHARS else None
            if match is None:
                break
            raw = {key: value for key, value in match.groupdict().items() if value is not None}
            row = _build_row(raw)
            if row is None:
                break
            rows.append(row)
        if rows:
            return tuple(rows)
    return ()


def _build_row(raw: Mapping[str, str]) -> CardBranchRow | None:
    branch = raw.get("branch", "").strip()
    if not branch or not branch.strip("-: "):  # no branch, or a stray separator row
        return None
    values: dict[str, Any] = {}
    for name, convert in _CONVERTERS.items():
        if name in raw:
            try:
                values[name] = convert(raw[name].strip())
            except Exception:  # one unreadable cell leaves only that field unset
                continue
    return CardBranchRow(branch=branch, **values)


# --------------------------------------------------------------------------------------------------
# Cell values: each returns None for a cell it cannot read
# --------------------------------------------------------------------------------------------------


def _to_int(cell: str) -> int | None:
    cell = cell.replace(",", "").replace("_", "")
    return int(cell) if _INT.fullmatch(cell) else None


def _to_bits(cell: str) -> int | None:
    match = _BITS.fullmatch(cell)
    return int(match.group(1)) if match else None


def _to_group_size(cell: str) -> int | None:
    if cell.lower() in _NO_GROUP_WORDS:
        return None
    match = _GROUP.fullmatch(cell)
    value = int(match.group(1)) if match else None
    return value if value else None  # 0 is not a group size either


def _to_bool(cell: str) -> bool | None:
    return _BOOL_WORDS.get(cell.lower())


def _to_float(cell: str) -> float | None:
    cell = cell.rstrip("%").strip()
    value = float(cell) if _FLOAT.fullmatch(cell) else None
    return value if value is not None and math.isfinite(value) else None  # "1e999" is inf


def _to_text(cell: str) -> str | None:
    return cell or None


def _to_description(cell: str) -> str:
    return cell


def _to_size(cell: str) -> int | None:
    match = _SIZE.fullmatch(cell.replace(",", ""))
    if match is None:
        return None
    factor = _BYTES_PER_UNIT.get(match.group(2).lower())
    if factor is None:
        return None
    try:
        # Decimal, not float: "40.66 GB" must be exactly 40_660_000_000 bytes.
        return int((Decimal(match.group(1)) * factor).to_integral_value())
    except InvalidOperation:
        return None


_CONVERTERS: Final[Mapping[str, Callable[[str], Any]]] = {
    "bits": _to_bits,
    "group_size": _to_group_size,
    "act_order": _to_bool,
    "damp_percent": _to_float,
    "dataset": _to_text,
    "seq_len": _to_int,
    "size_bytes": _to_size,
    "exllama": _to_bool,
    "description": _to_description,
}


# --------------------------------------------------------------------------------------------------
# Prompt template
# --------------------------------------------------------------------------------------------------


def _find_template(doc: _Doc, metadata: Mapping[str, Any]) -> CardTemplate | None:
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


def _markdown_template(doc: _Doc) -> tuple[str | None, str | None] | None:
    """(label, text) from a "## Prompt template: X" heading and the code block under it."""
    for heading in doc.headings:
        match = _TEMPLATE_HEADING.fullmatch(heading.text)
        if match is None:
            continue
        label = match.group(1).strip() or None
        end = doc.next_heading_after(heading.line)
        return _clip_label(label), _code_block(doc, heading.line + 1, end)
    return None


def _code_block(doc: _Doc, start: int, end: int) -> str | None:
    """Text of the first fenced code block that opens in ``[start, end)``."""
    opening = next((i for i in range(start, end) if doc.kinds[i] == _FENCE), None)
    if opening is None:
        return None
    body: list[str] = []
    for index in range(opening + 1, len(doc.lines)):
        if doc.kinds[index] != _CODE:
            break
        body.append(doc.lines[index])
    text = "\n".join(body).strip("\n")
    return text or None


def _page_template(doc: _Doc) -> tuple[str | None, str | None] | None:
    """(label, text) from page text: "Prompt template: X", or "Prompt template" then the text."""
    lines = doc.lines
    for index, line in enumerate(lines):
        if doc.kinds[index] != _TEXT or "emplate" not in line or len(line) > 200:
            continue
        cleaned = _clean_inline(line)
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
    return _TEMPLATE_NAME_BY_LABEL.get(_NON_ALNUM.sub("", label.lower()))


def _recognise_template(text: str) -> str | None:
    if _RAW_TEMPLATE.fullmatch(text):
        return _RAW_TEMPLATE_NAME
    return next(
        (name for name, needles in _TEMPLATE_SIGNATURES if all(needle in text for needle in needles)),
        None,
    )
