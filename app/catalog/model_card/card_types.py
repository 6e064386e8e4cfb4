"""The facts a model card states, as the rest of the app sees them: plain frozen dataclasses.

They live apart from the parser so that every parsing module can build them without importing
the package (and without an import cycle).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


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
