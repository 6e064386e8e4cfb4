"""The composer: why you cannot type yet (if so), the message box, Send and Stop."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPlainTextEdit, QPushButton, QVBoxLayout, QWidget

from app.ui import theme

TYPE_HINT = "Message (Enter sends, Shift+Enter for a new line)"


class ChatInput(QPlainTextEdit):
    """Enter sends, Shift+Enter is a new line, Esc stops, Ctrl+N starts a new chat."""

    submitted = Signal(str)
    stop_requested = Signal()
    new_chat_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setPlaceholderText(TYPE_HINT)
        self.setTabChangesFocus(True)
        self.setFixedHeight(72)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        key, mods = event.key(), event.modifiers()
        if key in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and not mods & Qt.KeyboardModifier.ShiftModifier:
            text = self.toPlainText()
            if text.strip() and self.isEnabled():
                self.submitted.emit(text)
            return
        if key == Qt.Key.Key_Escape:
            self.stop_requested.emit()
            return
        if key == Qt.Key.Key_N and mods & Qt.KeyboardModifier.ControlModifier:
            self.new_chat_requested.emit()
            return
        super().keyPressEvent(event)


class Composer(QWidget):
    """The input row. ``submitted`` carries the text; the page clears the box once it accepts it."""

    submitted = Signal(str)
    stop_requested = Signal()
    new_chat_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.reason_label = QLabel()
        self.reason_label.setStyleSheet(f"color: {theme.muted_text().name()};")
        self.reason_label.setWordWrap(True)
        layout.addWidget(self.reason_label)
        row = QHBoxLayout()
        self.input = ChatInput()
        self.input.submitted.connect(self.submitted)
        self.input.stop_requested.connect(self.stop_requested)
        self.input.new_chat_requested.connect(self.new_chat_requested)
        row.addWidget(self.input, 1)
        buttons = QVBoxLayout()
        self.send_button = QPushButton("Send")
        self.send_button.clicked.connect(lambda: self.submitted.emit(self.input.toPlainText()))
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip("Stop the reply (Esc); the partial reply is kept")
        self.stop_button.clicked.connect(self.stop_requested)
        buttons.addWidget(self.send_button)
        buttons.addWidget(self.stop_button)
        row.addLayout(buttons)
        layout.addLayout(row)

    def text(self) -> str:
        """What is typed."""
        return self.input.toPlainText()

    def clear(self) -> None:
        """Empty the box (the message was sent)."""
        self.input.clear()

    def set_state(self, *, can_type: bool, streaming: bool, reason: str) -> None:
        """Enable what applies now; ``reason`` says why typing is not possible (or what is going on)."""
        self.input.setEnabled(can_type)
        self.send_button.setEnabled(can_type and not streaming)
        self.stop_button.setEnabled(streaming)
        self.reason_label.setText(reason)
        self.reason_label.setVisible(bool(reason))
        self.input.setPlaceholderText(TYPE_HINT if can_type else reason)
