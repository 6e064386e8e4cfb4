"""The transcript's list model: one :class:`MessageRow` per message on the active path.

Streaming touches only the last row (``append_text``), so the view repaints one item per chunk.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Final

from PySide6.QtCore import QAbstractListModel, QModelIndex, QPersistentModelIndex, Qt

from app.ui.chat.rows import MessageRow

ROW_ROLE: Final = Qt.ItemDataRole.UserRole + 1

_Index = QModelIndex | QPersistentModelIndex


class TranscriptModel(QAbstractListModel):
    """Rows of the transcript (read-only: actions go out as signals, the page sends new rows in)."""

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self.rows: list[MessageRow] = []
        self._positions: dict[str, int] = {}

    def rowCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008 - Qt's signature
        return 0 if parent.isValid() else len(self.rows)

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self.rows):
            return None
        row = self.rows[index.row()]
        if role == ROW_ROLE:
            return row
        if role == Qt.ItemDataRole.DisplayRole:
            return row.text
        return None

    # -- changes ------------------------------------------------------------------------------------

    def set_rows(self, rows: list[MessageRow]) -> None:
        """Replace every row (a conversation opened, a version switched)."""
        self.beginResetModel()
        self.rows[:] = rows  # the same list object: the delegate reads it directly
        self._positions = {row.id: i for i, row in enumerate(self.rows)}
        self.endResetModel()

    def append_row(self, row: MessageRow) -> None:
        """Add a row at the end (a reply starts streaming)."""
        at = len(self.rows)
        self.beginInsertRows(QModelIndex(), at, at)
        self.rows.append(row)
        self._positions[row.id] = at
        self.endInsertRows()

    def replace_row(self, row: MessageRow) -> None:
        """Show a changed row (same id)."""
        at = self._positions.get(row.id)
        if at is None:
            return
        self.rows[at] = row
        changed = self.index(at)
        self.dataChanged.emit(changed, changed)

    def append_text(self, text: str) -> None:
        """Streamed text for the last row."""
        if self.rows:
            last = self.rows[-1]
            self.replace_row(replace(last, text=last.text + text))

    # -- lookup -------------------------------------------------------------------------------------

    def row(self, message_id: str) -> MessageRow | None:
        """The row of a message (None when it is not shown)."""
        at = self._positions.get(message_id)
        return None if at is None else self.rows[at]

    def index_of(self, message_id: str) -> QModelIndex:
        """The model index of a message (invalid when it is not shown)."""
        at = self._positions.get(message_id)
        return QModelIndex() if at is None else self.index(at)
