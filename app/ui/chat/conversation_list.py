"""Saved conversations: search, the list (title, then date and model under it), New, Rename, Delete,
Export and Import. Selecting and every button go out as signals; the page does the work."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, QRect, QSize, Qt, Signal
from PySide6.QtGui import QFont, QFontMetrics, QPainter
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QPushButton,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.ui import theme
from app.ui.chat.text import short_date

if TYPE_CHECKING:
    from app.chat.storage import ConversationSummary

ID_ROLE: Final = Qt.ItemDataRole.UserRole
DETAIL_ROLE: Final = Qt.ItemDataRole.UserRole + 1
UNSAVED_TITLE: Final = "New chat"  # an empty chat (saved or not yet)

_Index = QModelIndex | QPersistentModelIndex


def summary_detail(summary: ConversationSummary, now: float | None = None) -> str:
    """``14:05 · TheBloke/Llama-2-7B-Chat-GPTQ``: when it was last written to, and its model."""
    when = summary.updated_at or summary.created_at or time.time()
    return f"{short_date(when, now)} · {summary.model or 'no model'}"


class _TwoLineDelegate(QStyledItemDelegate):
    """Title on the first line, date and model muted and smaller on the second."""

    def sizeHint(self, option: QStyleOptionViewItem, index: _Index) -> QSize:
        metrics = QFontMetrics(option.font)
        return QSize(100, metrics.height() * 2 + 10)

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: _Index) -> None:
        opt = QStyleOptionViewItem(option)
        self.initStyleOption(opt, index)
        title = opt.text
        opt.text = ""
        widget = opt.widget
        style = widget.style() if widget is not None else None
        if style is not None:
            style.drawControl(QStyle.ControlElement.CE_ItemViewItem, opt, painter, widget)
        rect: QRect = opt.rect.adjusted(6, 4, -6, -4)
        selected = bool(opt.state & QStyle.StateFlag.State_Selected)
        pal = opt.palette
        painter.save()
        metrics = QFontMetrics(opt.font)
        top = QRect(rect.left(), rect.top(), rect.width(), metrics.height())
        painter.setPen(pal.color(pal.ColorRole.HighlightedText if selected else pal.ColorRole.Text))
        painter.drawText(
            top,
            int(Qt.AlignmentFlag.AlignVCenter),
            metrics.elidedText(title, Qt.TextElideMode.ElideRight, top.width()),
        )
        small = QFont(opt.font)
        small.setPointSizeF(max(6.0, small.pointSizeF() * 0.9))
        painter.setFont(small)
        detail = str(index.data(DETAIL_ROLE) or "")
        bottom = QRect(rect.left(), top.bottom() + 2, rect.width(), metrics.height())
        painter.setPen(pal.color(pal.ColorRole.HighlightedText) if selected else theme.muted_text(pal))
        painter.drawText(
            bottom,
            int(Qt.AlignmentFlag.AlignVCenter),
            QFontMetrics(small).elidedText(detail, Qt.TextElideMode.ElideRight, bottom.width()),
        )
        painter.restore()


class ConversationList(QWidget):
    """The left column of the chat page."""

    conversation_selected = Signal(str)
    new_requested = Signal()
    rename_requested = Signal(str, str)  # id, current title
    delete_requested = Signal(str, str)  # id, title
    export_requested = Signal(str)  # "md", "md-all" (every branch) or "json"
    import_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._summaries: list[ConversationSummary] = []
        self._listed: set[str] = set()  # the ids shown, for lists()
        self._unsaved: float | None = None  # when "New chat" was pressed, until its first message
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 4, 0)
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search conversations")
        self.search.setClearButtonEnabled(True)
        self.search.textChanged.connect(lambda _t: self._fill(self.current_id()))
        layout.addWidget(self.search)
        self.view = QListWidget()
        self.view.setItemDelegate(_TwoLineDelegate(self.view))
        self.view.setUniformItemSizes(True)
        self.view.currentItemChanged.connect(self._selected)
        layout.addWidget(self.view, 1)
        row = QHBoxLayout()
        self.new_button = QPushButton("New")
        self.new_button.setToolTip("New chat (Ctrl+N)")
        self.new_button.clicked.connect(self.new_requested)
        self.rename_button = QPushButton("Rename")
        self.rename_button.clicked.connect(lambda: self._with_current(self.rename_requested))
        self.delete_button = QPushButton("Delete")
        self.delete_button.clicked.connect(lambda: self._with_current(self.delete_requested))
        for b in (self.new_button, self.rename_button, self.delete_button):
            row.addWidget(b)
        layout.addLayout(row)
        row2 = QHBoxLayout()
        self.export_button = QToolButton()
        self.export_button.setText("Export")
        self.export_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        menu = QMenu(self.export_button)
        menu.addAction("Markdown…", lambda: self.export_requested.emit("md"))
        menu.addAction("Markdown, every branch…", lambda: self.export_requested.emit("md-all"))
        menu.addAction("JSON…", lambda: self.export_requested.emit("json"))
        self.export_button.setMenu(menu)
        self.import_button = QPushButton("Import JSON…")
        self.import_button.clicked.connect(self.import_requested)
        row2.addWidget(self.export_button)
        row2.addWidget(self.import_button)
        row2.addStretch(1)
        layout.addLayout(row2)
        self._update_buttons()

    # -- content --------------------------------------------------------------------------------------

    def set_summaries(self, summaries: Sequence[ConversationSummary], current_id: str | None) -> None:
        """The saved conversations (newest first) and which one is shown."""
        self._summaries = list(summaries)
        if current_id is not None:
            self._unsaved = None
        self._fill(current_id)

    def show_unsaved(self) -> None:
        """A new chat: listed (dated now) and selected at once, saved with its first message."""
        self._unsaved = time.time()
        self._fill(None)

    def _fill(self, current_id: str | None) -> None:
        wanted = self.search.text().strip().casefold()
        self._listed = set()
        self.view.blockSignals(True)
        self.view.clear()
        if self._unsaved is not None:
            item = QListWidgetItem(UNSAVED_TITLE)
            item.setData(ID_ROLE, "")
            item.setData(DETAIL_ROLE, f"{short_date(self._unsaved)} · not saved until the first message")
            self.view.addItem(item)
            if current_id is None:
                self.view.setCurrentItem(item)
        for summary in self._summaries:
            title = summary.title or (UNSAVED_TITLE if not summary.message_count else "Untitled")
            if wanted and wanted not in title.casefold():
                continue
            item = QListWidgetItem(title)
            item.setData(ID_ROLE, summary.id)
            self._listed.add(summary.id)
            detail = summary_detail(summary)
            item.setData(DETAIL_ROLE, detail)
            item.setToolTip(f"{title}\n{detail} · {summary.message_count} messages")
            self.view.addItem(item)
            if summary.id == current_id:
                self.view.setCurrentItem(item)
        self.view.blockSignals(False)
        self._update_buttons()

    # -- queries --------------------------------------------------------------------------------------

    def lists(self, conversation_id: str | None) -> bool:
        """Whether a saved conversation is listed (a set lookup: asked on every state the chat thread
        sends, with hundreds of chats listed)."""
        return conversation_id in self._listed

    def ids(self) -> list[str]:
        """Saved conversation ids listed, in order."""
        return [i for i in (str(self.view.item(r).data(ID_ROLE)) for r in range(self.view.count())) if i]

    def titles(self) -> list[str]:
        """Titles listed, in order (a new, unsaved chat included)."""
        return [self.view.item(r).text() for r in range(self.view.count())]

    def details(self) -> list[str]:
        """The second line of each entry (date · model), in order."""
        return [str(self.view.item(r).data(DETAIL_ROLE)) for r in range(self.view.count())]

    def current_id(self) -> str | None:
        """The selected saved conversation's id."""
        item = self.view.currentItem()
        value = str(item.data(ID_ROLE)) if item is not None else ""
        return value or None

    def current_title(self) -> str:
        """The selected entry's title."""
        item = self.view.currentItem()
        return item.text() if item is not None else ""

    def select(self, conversation_id: str) -> bool:
        """Select (and so open) a listed conversation; False when it is not listed."""
        for r in range(self.view.count()):
            if self.view.item(r).data(ID_ROLE) == conversation_id:
                self.view.setCurrentRow(r)
                return True
        return False

    def select_row(self, row: int) -> None:
        """Select the entry at ``row`` (opens it)."""
        self.view.setCurrentRow(row)

    def set_streaming(self, streaming: bool) -> None:
        """While a reply streams the list stays usable; only deleting and importing wait."""
        for b in (self.delete_button, self.import_button):
            b.setEnabled(not streaming)
        self._streaming = streaming
        self._update_buttons()

    _streaming = False

    def _with_current(self, signal: Any) -> None:
        conversation_id = self.current_id()
        if conversation_id:
            signal.emit(conversation_id, self.current_title())

    def _selected(self, item: QListWidgetItem | None, _previous: object = None) -> None:
        self._update_buttons()
        if item is not None and item.data(ID_ROLE):
            self.conversation_selected.emit(str(item.data(ID_ROLE)))

    def _update_buttons(self) -> None:
        saved = self.current_id() is not None
        self.rename_button.setEnabled(saved)
        self.delete_button.setEnabled(saved and not self._streaming)
        self.export_button.setEnabled(saved)
