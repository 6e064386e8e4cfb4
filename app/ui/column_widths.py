"""Column widths the user set by dragging a table's header, kept by column key across restarts.

A table sizes its columns itself (to their texts, or to defaults) whenever its rows change; a column
the user resized keeps the user's width over that, and only that column: the others still follow
their texts. The table does its own sizing inside :meth:`ColumnWidths.sizing`, so only a drag counts
as the user's. The stretched last column is never recorded: its width is the window's, not a choice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from PySide6.QtCore import QObject
from PySide6.QtWidgets import QHeaderView


class ColumnWidths(QObject):
    """The user's widths for one header; ``keys()`` names its columns in logical order."""

    def __init__(self, header: QHeaderView, keys: Callable[[], list[str]]) -> None:
        super().__init__(header)
        self.header = header
        self.keys = keys
        self.user: dict[str, int] = {}
        self._sizing = 0
        header.sectionResized.connect(self._resized)

    @contextmanager
    def sizing(self) -> Iterator[None]:
        """The table's own resizing: not recorded; the user's widths are put back at the end."""
        self._sizing += 1
        try:
            yield
        finally:
            self._sizing -= 1
        if not self._sizing:
            self.apply()

    def apply(self) -> None:
        """Give every column the user sized the user's width."""
        self._sizing += 1
        try:
            for index, key in enumerate(self.keys()):
                if key in self.user and not self._stretched(index):
                    self.header.resizeSection(index, self.user[key])
        finally:
            self._sizing -= 1

    def restore(self, widths: dict[str, int]) -> None:
        """Widths saved earlier (``{column key: pixels}``), applied at once."""
        self.user = {key: width for key, width in widths.items() if width > 0}
        self.apply()

    def _stretched(self, logical: int) -> bool:
        last = self.header.logicalIndex(self.header.count() - 1)
        return self.header.stretchLastSection() and logical == last

    def _resized(self, logical: int, _old: int, new: int) -> None:
        keys = self.keys()
        if self._sizing or new <= 0 or not 0 <= logical < len(keys) or self._stretched(logical):
            return
        self.user[keys[logical]] = new
