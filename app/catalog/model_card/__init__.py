"""Facts a model card (the repo's README.md) states: the branch table and the prompt template.

The card is untrusted text written for humans, so :func:`parse_model_card` reads it leniently and
never raises: whatever it cannot read is simply absent from the result. Two shapes are understood:

* markdown, as the repo's README.md holds it (YAML front matter, ``#`` headings, pipe tables,
  fenced code blocks) — the shape the app actually reads;
* the same card as a web page renders it (headings as plain lines, tables flattened to
  space-separated lines), which is what people copy and paste.

Column names, unit sizes, yes/no words, template names and template signatures are data tables
in the modules below, so a card that words things differently needs a new table entry, not new code.
Every regular expression's character classes exclude their own delimiters, so each pattern stays
linear on garbage input (no nested or overlapping quantifiers).

The package, one job a module:

* ``card_types``: the dataclasses the parse returns (re-exported here);
* ``document``: front matter, and the body as lines, fenced code, headings and inline text;
* ``title_and_description``: the card's title and a short description;
* ``branch_table``: the table of branches, markdown or flattened page text;
* ``cell_values``: the converters that read that table's cells;
* ``prompt_template``: the prompt template the card names and/or shows.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, TypeVar

from app.catalog.model_card.branch_table import find_markdown_rows, find_page_rows
from app.catalog.model_card.card_types import CardBranchRow, CardTemplate, ModelCard
from app.catalog.model_card.document import CardDocument, split_front_matter
from app.catalog.model_card.prompt_template import find_template
from app.catalog.model_card.title_and_description import find_title_and_description

__all__ = ["CardBranchRow", "CardTemplate", "ModelCard", "parse_model_card"]


# Real cards are tens of KB. Bounding the input keeps a hostile or corrupt "README" from making the
# catalog slow; nothing a card legitimately states lies that far in.
_MAX_CARD_CHARS: Final = 2_000_000

_T = TypeVar("_T")


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
    metadata, body = _guarded(lambda: split_front_matter(text), (empty, text))
    doc = _guarded(lambda: CardDocument.parse(body), None)
    if doc is None:
        return ModelCard(metadata=metadata)
    no_text: tuple[str | None, str | None] = (None, None)
    no_rows: tuple[CardBranchRow, ...] = ()
    title, description = _guarded(lambda: find_title_and_description(doc), no_text)
    rows = _guarded(lambda: find_markdown_rows(doc) or find_page_rows(doc), no_rows)
    template = _guarded(lambda: find_template(doc, metadata), None)
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
