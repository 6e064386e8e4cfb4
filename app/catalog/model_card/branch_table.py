"""The table of branches a card states (TheBloke's "Provided files"), one CardBranchRow a row.

Two shapes: a markdown pipe table, and the same table as a web page flattens it into lines.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from app.catalog.model_card.card_types import CardBranchRow
from app.catalog.model_card.cell_values import CELL_CONVERTERS
from app.catalog.model_card.document import NON_ALNUM, TEXT_LINE, CardDocument, clean_inline

_MAX_ROW_LINE_CHARS: Final = 4_000

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


def find_markdown_rows(doc: CardDocument) -> tuple[CardBranchRow, ...]:
    """Rows of the first pipe table with a "Branch" column that yields any row."""
    lines, kinds = doc.lines, doc.kinds
    index = 0
    while index + 1 < len(lines):
        header, separator = lines[index], lines[index + 1]
        is_table = (
            kinds[index] == TEXT_LINE
            and kinds[index + 1] == TEXT_LINE
            and "|" in header
            and _is_separator(separator)
        )
        if not is_table:
            index += 1
            continue
        columns = [_ROW_FIELD_BY_HEADER.get(_header_key(cell)) for cell in _split_cells(header)]
        end = index + 2
        while end < len(lines) and kinds[end] == TEXT_LINE and "|" in lines[end] and lines[end].strip():
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
    return NON_ALNUM.sub(" ", clean_inline(cell).lower()).strip()


def _row_from_cells(columns: list[str | None], cells: list[str]) -> CardBranchRow | None:
    raw: dict[str, str] = {}
    # zip() drops cells beyond the header and leaves fields of missing cells unset.
    for name, cell in zip(columns, cells, strict=False):
        if name is not None and name not in raw:  # a repeated column: the first one wins
            raw[name] = clean_inline(cell)
    return _build_row(raw)


def find_page_rows(doc: CardDocument) -> tuple[CardBranchRow, ...]:
    """Rows of a "Provided files" table that a web page flattened into space-separated lines."""
    lines = doc.lines
    for index, line in enumerate(lines):
        stripped = line.strip()
        if stripped[:6].lower() != "branch" or len(stripped) > 300:
            continue
        if not _PAGE_TABLE_HEADER.fullmatch(NON_ALNUM.sub(" ", stripped.lower()).strip()):
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
    for name, convert in CELL_CONVERTERS.items():
        if name in raw:
            try:
                values[name] = convert(raw[name].strip())
            except Exception:  # one unreadable cell leaves only that field unset
                continue
    return CardBranchRow(branch=branch, **values)
