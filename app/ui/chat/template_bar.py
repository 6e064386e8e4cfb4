"""The template row: its name and where it came from, the override selector, "Preview prompt" and the
preview dialog (the exact text the model receives)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFontDatabase, QGuiApplication
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.ui.chat.text import escape

if TYPE_CHECKING:
    from app.chat.engine import PromptPreview
    from app.ui.chat.worker_data import TemplateInfo


class TemplateBar(QWidget):
    """``Template: ChatML — model's own template`` [override ▾] [Preview prompt]."""

    template_chosen = Signal(str)  # "" : the detected template
    preview_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.label = QLabel()
        self.label.setTextFormat(Qt.TextFormat.RichText)
        layout.addWidget(self.label, 1)
        self.box = QComboBox()
        self.box.setToolTip("Override the prompt template")
        self.box.activated.connect(lambda i: self.template_chosen.emit(str(self.box.itemData(i) or "")))
        layout.addWidget(self.box)
        self.preview_button = QPushButton("Preview prompt")
        self.preview_button.clicked.connect(self.preview_requested)
        layout.addWidget(self.preview_button)
        self.fill()

    def fill(self) -> None:
        """The override choices: detected, the model's own Jinja, every built-in and user template."""
        from app.chat.templates import load_user_templates, template_names

        self.box.clear()
        self.box.addItem("Detected", "")
        self.box.addItem("The model's own (jinja)", "jinja")
        for name in template_names(load_user_templates()):
            self.box.addItem(name, name)

    def choose(self, name: str) -> bool:
        """Select an override by name (as if picked) and announce it; False when there is none."""
        index = self.box.findData(name)
        if index < 0:
            return False
        self.box.setCurrentIndex(index)
        self.template_chosen.emit(name)
        return True

    def show_template(self, template: TemplateInfo | None) -> None:
        """The template in use (None: none, no model)."""
        if template is None:
            self.label.setText("")
            self.label.setToolTip("")
            return
        self.label.setText(f"Template: <b>{escape(template.name)}</b> — {escape(template.source)}")
        self.label.setToolTip(template.detail)

    def set_usable(self, usable: bool) -> None:
        """Override and preview need a loaded model and no reply streaming."""
        self.box.setEnabled(usable)
        self.preview_button.setEnabled(usable)


class PromptPreviewDialog(QDialog):
    """The exact text the model receives, with the template and token count."""

    def __init__(self, preview: PromptPreview, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Prompt preview")
        self.resize(760, 560)
        layout = QVBoxLayout(self)
        info = QLabel(
            f"Template <b>{escape(preview.template)}</b> — {escape(preview.template_source)}: "
            f"{escape(preview.template_detail)}<br>"
            f"{preview.token_count} tokens; {len(preview.plan.dropped)} message(s) out of context; "
            f"stop strings: {escape(', '.join(repr(s) for s in preview.stop_strings) or 'none')}"
        )
        info.setTextFormat(Qt.TextFormat.RichText)
        info.setWordWrap(True)
        layout.addWidget(info)
        self.text = QPlainTextEdit()
        self.text.setReadOnly(True)
        self.text.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.text.setPlainText(preview.text)
        layout.addWidget(self.text, 1)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        copy = buttons.addButton("Copy", QDialogButtonBox.ButtonRole.ActionRole)
        copy.clicked.connect(lambda: QGuiApplication.clipboard().setText(preview.text))
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
