"""The transcript: a virtualized list of messages (a QListView over :class:`TranscriptModel`, painted by
:class:`MessageDelegate`). Only what is on screen is laid out, so a 1,000-message conversation opens as
fast as a short one; while a reply streams only the last row changes.

Clicks on a message's actions come out as ``action(name, message_id)``: copy, edit, pin, regenerate,
continue, delete, previous_version, next_version. The page decides what they do.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QModelIndex, QPoint, QRect, Qt, QTimer, QUrl, Signal
from PySide6.QtGui import QDesktopServices, QHelpEvent, QMouseEvent, QResizeEvent
from PySide6.QtWidgets import QAbstractItemView, QListView, QToolTip, QWidget

from app.ui.chat.message_delegate import MessageDelegate
from app.ui.chat.rows import ACTION_TEXT, MessageRow
from app.ui.chat.transcript_model import ROW_ROLE, TranscriptModel

_VERSION_TIPS = {"previous_version": "The previous version", "next_version": "The next version"}
_AT_END_PX = 24
STREAM_REPAINT_MS = 100


class Transcript(QListView):
    """The messages of the active path."""

    action = Signal(str, str)  # action name, message id

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model_ = TranscriptModel(self)
        self.setModel(self.model_)
        self.delegate = MessageDelegate(self)
        self.delegate.rows = self.model_.rows
        self.delegate.font_changed()
        self.setItemDelegate(self.delegate)
        self.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setUniformItemSizes(False)
        self.setMouseTracking(True)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.verticalScrollBar().setSingleStep(24)
        self._pending_text = ""
        self._flush_timer = QTimer(self)
        self._flush_timer.setInterval(STREAM_REPAINT_MS)
        self._flush_timer.timeout.connect(self._flush_pending)
        # Follow the end while the user is there (a streaming reply, rows measured after the estimate).
        self._follow = True
        bar = self.verticalScrollBar()
        bar.valueChanged.connect(self._scrolled)
        bar.rangeChanged.connect(self._range_changed)

    # -- content ------------------------------------------------------------------------------------

    def show_rows(self, rows: list[MessageRow], *, keep_position: bool = False) -> None:
        """Show these rows; scroll to the end unless ``keep_position`` (a version switch)."""
        self._pending_text = ""  # the rows carry the whole text now
        if [r.id for r in rows] == [r.id for r in self.model_.rows]:
            for old, new in zip(self.model_.rows, rows, strict=True):
                if old != new:
                    self.model_.replace_row(new)  # same messages: repaint what changed, keep the layout
            return
        value = self.verticalScrollBar().value()
        following = self._follow
        same = bool(rows) and bool(self.model_.rows) and rows[0].id == self.model_.rows[0].id
        if not same:
            self.delegate.forget()
        if not (keep_position and same and not following):
            self.delegate.measure_tail(rows, self.viewport().height())  # opened at the end: lay that out now
        self.model_.set_rows(rows)
        if keep_position and same and not following:
            self.verticalScrollBar().setValue(value)
            self._follow = False
        else:
            self._follow = True  # a new conversation opens at its end; a followed one stays there
            self.scrollToBottom()

    def clear(self) -> None:
        """No messages."""
        self.show_rows([])

    def append_row(self, row: MessageRow) -> None:
        """Add a message at the end (the reply that starts streaming)."""
        self.model_.append_row(row)
        if self._follow:
            self.scrollToBottom()

    def replace_row(self, row: MessageRow) -> None:
        """Show a changed message."""
        self.model_.replace_row(row)

    def append_text(self, text: str) -> None:
        """Streamed text for the last message: shown at once after a pause (the first token), else at
        most every :data:`STREAM_REPAINT_MS` (each repaint lays the reply out again; the model's thread
        needs the CPU more than the eye needs 25 repaints a second)."""
        self._pending_text += text
        if not self._flush_timer.isActive():
            self._flush_pending()
            self._flush_timer.start()

    def _flush_pending(self) -> None:
        if self._pending_text:
            text, self._pending_text = self._pending_text, ""
            self.model_.append_text(text)
        else:
            self._flush_timer.stop()

    def flush(self) -> None:
        """Show streamed text still waiting for the next repaint."""
        self._flush_pending()

    def rows(self) -> list[MessageRow]:
        """The rows shown, in order."""
        return list(self.model_.rows)

    def row(self, message_id: str) -> MessageRow | None:
        """The row of a message, if shown."""
        return self.model_.row(message_id)

    def last_row(self) -> MessageRow | None:
        """The last row, if any."""
        return self.model_.rows[-1] if self.model_.rows else None

    # -- geometry (tests and screenshots click real positions) -----------------------------------------

    def action_rect(self, message_id: str, name: str) -> QRect:
        """Where ``name`` of a message is, in viewport coordinates (scrolled into view; empty if absent)."""
        index = self.model_.index_of(message_id)
        row = self.model_.row(message_id)
        if not index.isValid() or row is None:
            return QRect()
        self.scrollTo(index, QAbstractItemView.ScrollHint.PositionAtCenter)
        self._follow = False
        self.doItemsLayout()
        rect = self.visualRect(index)
        return self.delegate.layout(rect, row).hits.get(name, QRect())

    def version_text(self, message_id: str) -> str:
        """``2/3`` for a message with versions, "" otherwise (what the switcher shows)."""
        row = self.model_.row(message_id)
        return f"{row.version[0]}/{row.version[1]}" if row is not None and row.has_versions else ""

    # -- mouse --------------------------------------------------------------------------------------------

    def _hit(self, pos: QPoint) -> tuple[QModelIndex, MessageRow | None, str | None]:
        index = self.indexAt(pos)
        row = index.data(ROW_ROLE) if index.isValid() else None
        if not isinstance(row, MessageRow):
            return index, None, None
        return index, row, self.delegate.hit(self.visualRect(index), row, pos)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        index, row, name = self._hit(event.position().toPoint())
        hovered = (row.id, name) if row is not None and name is not None else None
        if hovered != self.delegate.hovered:
            self.delegate.hovered = hovered
            self.viewport().update()
        link = row is not None and bool(
            self.delegate.anchor_at(self.visualRect(index), row, event.position().toPoint())
        )
        self.viewport().setCursor(
            Qt.CursorShape.PointingHandCursor if hovered or link else Qt.CursorShape.ArrowCursor
        )
        super().mouseMoveEvent(event)

    def leaveEvent(self, event: QEvent) -> None:
        if self.delegate.hovered is not None:
            self.delegate.hovered = None
            self.viewport().update()
        super().leaveEvent(event)

    def mousePressEvent(self, event: QMouseEvent) -> None:
        _index, _row, name = self._hit(event.position().toPoint())
        if name is None:
            super().mousePressEvent(event)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        pos = event.position().toPoint()
        index, row, name = self._hit(pos)
        if row is not None and event.button() == Qt.MouseButton.LeftButton:
            if name is not None:
                self.action.emit(name, row.id)
                return
            anchor = self.delegate.anchor_at(self.visualRect(index), row, pos)
            if anchor:
                QDesktopServices.openUrl(QUrl(anchor))
                return
        super().mouseReleaseEvent(event)

    def viewportEvent(self, event: QEvent) -> bool:
        if event.type() == QEvent.Type.Resize and self.viewport().width() != self.delegate.width:
            # The viewport narrows when the scroll bar appears, without a resize of the view.
            self.delegate.set_width(self.viewport().width())
        if event.type() == QEvent.Type.ToolTip and isinstance(event, QHelpEvent):
            _index, row, name = self._hit(event.pos())
            if row is not None and name is not None:
                tip = _VERSION_TIPS.get(name) or ACTION_TEXT[name][1]
                QToolTip.showText(event.globalPos(), tip, self.viewport())
                return True
            QToolTip.hideText()
            return True
        return super().viewportEvent(event)

    # -- following the end ----------------------------------------------------------------------------

    def _scrolled(self, value: int) -> None:
        self._follow = value >= self.verticalScrollBar().maximum() - _AT_END_PX

    def _range_changed(self, _low: int, high: int) -> None:
        if self._follow:
            self.verticalScrollBar().setValue(high)

    def changeEvent(self, event: QEvent) -> None:
        if event.type() == QEvent.Type.FontChange:
            self.delegate.font_changed()
        super().changeEvent(event)

    def resizeEvent(self, event: QResizeEvent) -> None:
        self.delegate.set_width(self.viewport().width())
        super().resizeEvent(event)
