"""The chat page's parts: a message bubble, the input box, the context budget meter, the settings panel,
the prompt preview and the endpoint editor. Display only: the model is the chat thread's business."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from PySide6.QtCore import QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QFontDatabase, QGuiApplication, QKeyEvent, QPainter, QPaintEvent
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.backends.base import GenerationStats
from app.chat.profiles import EffectiveSettings, ModelSettings, SettingSource
from app.ui import theme

if TYPE_CHECKING:
    from app.chat.conversation import Message
    from app.chat.engine import PromptPreview
    from app.remote.endpoints import Endpoint
    from app.ui.chat_worker import Budget

STOP_NOTES = {
    "cancelled": "Stopped — the partial reply is kept.",
    "length": "Reached the length limit (max new tokens).",
    "error": "Interrupted — the partial reply is kept. Continue to resume.",
}


def stats_text(stats: GenerationStats) -> str:
    """``42 tokens · 18.3 tokens/s · first token 0.21 s``."""
    return (
        f"{stats.new_tokens} tokens · {stats.tokens_per_second:.1f} tokens/s · "
        f"first token {stats.time_to_first_token:.2f} s"
    )


class MessageWidget(QFrame):
    """One message: role, Markdown body, actions (copy, edit, pin, regenerate, continue), stats."""

    action = Signal(str, str)  # action name, message id

    def __init__(
        self,
        message: Message,
        *,
        last: bool = False,
        dropped: bool = False,
        stats: GenerationStats | None = None,
        interactive: bool = True,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.message_id = message.id
        self.role = message.role.value
        self.dropped = dropped
        self.setObjectName("message")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        user = self.role == "user"
        pal = self.palette()
        base = pal.color(pal.ColorRole.Base)
        tint = QColor("#3d7be0") if user else QColor("#2fb380")
        bg = QColor(
            (base.red() * 9 + tint.red()) // 10,
            (base.green() * 9 + tint.green()) // 10,
            (base.blue() * 9 + tint.blue()) // 10,
        )
        self.setStyleSheet(
            f"QFrame#message {{ background: {bg.name()}; border-radius: 6px; border: 1px solid "
            f"{pal.color(pal.ColorRole.Mid).name()}; }}"
        )
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 6, 10, 6)
        layout.setSpacing(4)

        header = QHBoxLayout()
        who = QLabel("<b>You</b>" if user else "<b>Assistant</b>")
        header.addWidget(who)
        self.dropped_label = QLabel("out of context")
        self.dropped_label.setToolTip(
            "This turn no longer fits the context: the model does not see it. Pin it to keep it."
        )
        self.dropped_label.setStyleSheet(
            f"color: {theme.warning_color().name()}; font-style: italic; border: none;"
        )
        self.dropped_label.setVisible(dropped)
        header.addWidget(self.dropped_label)
        header.addStretch(1)
        self.buttons: dict[str, QToolButton] = {}

        def button(name: str, text: str, tip: str) -> QToolButton:
            b = QToolButton()
            b.setText(text)
            b.setToolTip(tip)
            b.setAutoRaise(True)
            b.clicked.connect(lambda: self.action.emit(name, self.message_id))
            header.addWidget(b)
            self.buttons[name] = b
            return b

        button("copy", "Copy", "Copy this message's text")
        if interactive:
            button("edit", "Edit", "Edit this message (later turns are dropped)")
            pin = button("pin", "Unpin" if message.pinned else "Pin", "Keep this turn in context")
            pin.setCheckable(True)
            pin.setChecked(message.pinned)
            if last and not user:
                button("regenerate", "Regenerate", "Replace this reply")
                button("continue", "Continue", "Generate more of this reply")
        layout.addLayout(header)

        self.body = QLabel()
        self.body.setTextFormat(Qt.TextFormat.MarkdownText)
        self.body.setWordWrap(True)
        self.body.setTextInteractionFlags(
            Qt.TextInteractionFlag.TextSelectableByMouse | Qt.TextInteractionFlag.LinksAccessibleByMouse
        )
        self.body.setOpenExternalLinks(True)
        self.body.setStyleSheet("border: none; background: transparent;")
        layout.addWidget(self.body)
        self.footer = QLabel()
        self.footer.setStyleSheet(f"color: {theme.muted_text().name()}; border: none;")
        layout.addWidget(self.footer)
        self.text = ""
        self.set_text(message.content)
        self.set_footer(stats, message.stop_reason, streaming=not message.complete)
        if dropped:
            self.body.setEnabled(False)

    def set_text(self, text: str) -> None:
        """Show ``text`` as Markdown (an empty reply shows an ellipsis while it streams)."""
        self.text = text
        self.body.setText(text if text.strip() else "…")

    def append(self, text: str) -> None:
        """Add streamed text."""
        self.set_text(self.text + text)

    def set_footer(
        self, stats: GenerationStats | None, stop_reason: str | None, *, streaming: bool = False
    ) -> None:
        """Stats and how the reply ended."""
        parts: list[str] = []
        if streaming:
            parts.append("Generating… (Esc stops)")
        if stats is not None and self.role == "assistant":
            parts.append(stats_text(stats))
        note = STOP_NOTES.get(stop_reason or "")
        if note and self.role == "assistant" and not streaming:
            parts.append(note)
        self.interrupted = stop_reason == "error"
        self.footer.setText(" · ".join(parts))
        color = theme.error_color() if self.interrupted else theme.muted_text()
        self.footer.setStyleSheet(f"color: {color.name()}; border: none;")
        self.footer.setVisible(bool(parts))

    def copy(self) -> None:
        """Put the message's text on the clipboard."""
        QGuiApplication.clipboard().setText(self.text)


class ChatInput(QPlainTextEdit):
    """Enter sends, Shift+Enter is a new line, Esc stops, Ctrl+N starts a new chat."""

    submitted = Signal(str)
    stop_requested = Signal()
    new_chat_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setPlaceholderText("Message (Enter sends, Shift+Enter for a new line)")
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


class BudgetMeter(QWidget):
    """A bar: system prompt, history, reserved reply, free — out of the context length."""

    COLORS: ClassVar[dict[str, str]] = {"system": "#a877d9", "history": "#5b8def", "reserve": "#e3a23b"}

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.budget: Budget | None = None
        self.setMinimumHeight(14)
        self.setMaximumHeight(14)

    def set_budget(self, budget: Budget | None) -> None:
        """Show a budget (None: empty)."""
        self.budget = budget
        self.setToolTip(self.describe())
        self.update()

    def describe(self) -> str:
        """The figures in words."""
        b = self.budget
        if b is None:
            return "No model loaded."
        text = (
            f"{b.used} / {b.context_length} tokens: system {b.system}, history {b.history}, "
            f"reserved for the reply {b.reserve}"
        )
        if b.dropped:
            text += f"; {len(b.dropped)} message(s) out of context"
        if b.error:
            text += f". {b.error}"
        return text

    def sizeHint(self) -> QSize:
        return QSize(200, 14)

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        rect = QRectF(self.rect()).adjusted(0.5, 0.5, -0.5, -0.5)
        pal = self.palette()
        painter.setPen(pal.color(pal.ColorRole.Mid))
        painter.setBrush(pal.color(pal.ColorRole.Base))
        painter.drawRoundedRect(rect, 3, 3)
        b = self.budget
        if b is None or b.context_length <= 0:
            return
        x = rect.left() + 1
        width = rect.width() - 2
        painter.setPen(Qt.PenStyle.NoPen)
        for name, value in (("system", b.system), ("history", b.history), ("reserve", b.reserve)):
            w = width * min(1.0, value / b.context_length)
            painter.setBrush(QColor(self.COLORS[name]))
            painter.drawRect(
                QRectF(x, rect.top() + 1, max(0.0, min(w, rect.right() - 1 - x)), rect.height() - 2)
            )
            x += w
        painter.end()


# -- settings panel ----------------------------------------------------------------------------------

_SOURCE_TEXT = {
    SettingSource.DEFAULT: "default",
    SettingSource.MODEL: "model",
    SettingSource.PROFILE: "profile",
    SettingSource.CHAT: "this chat",
}
RELOAD_FIELDS = ("context_length", "cache_type", "backend")


class SettingsPanel(QWidget):
    """The model's settings, each field with the layer its value comes from."""

    changed = Signal(str)  # field name edited by the user
    save_requested = Signal()
    reset_requested = Signal()
    reload_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._populating = False
        self.fields: dict[str, QWidget] = {}
        self.sources: dict[str, QLabel] = {}
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        title = QLabel("<b>Settings for this model</b>")
        layout.addWidget(title)
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        layout.addLayout(form)

        self.system_prompt = QPlainTextEdit()
        self.system_prompt.setFixedHeight(64)
        self.system_prompt.setPlaceholderText("The template's default")
        self.system_prompt.textChanged.connect(lambda: self._edited("system_prompt"))

        def dspin(lo: float, hi: float, step: float, decimals: int = 2) -> QDoubleSpinBox:
            box = QDoubleSpinBox()
            box.setRange(lo, hi)
            box.setSingleStep(step)
            box.setDecimals(decimals)
            return box

        def ispin(lo: int, hi: int, special: str = "") -> QSpinBox:
            box = QSpinBox()
            box.setRange(lo, hi)
            if special:
                box.setSpecialValueText(special)
            return box

        self.temperature = dspin(0, 5, 0.05)
        self.top_p = dspin(0.01, 1, 0.05)
        self.top_k = ispin(0, 1000, "off")
        self.min_p = dspin(0, 0.99, 0.01)
        self.repetition_penalty = dspin(0.01, 5, 0.05)
        self.max_new_tokens = ispin(1, 1_000_000)
        self.seed = QLineEdit()
        self.seed.setPlaceholderText("random")
        self.context_length = ispin(0, 10_000_000, "model's")
        self.cache_type = QComboBox()
        from app.catalog.vram import CacheType

        self.cache_type.addItems([c.value for c in CacheType])
        self.backend = QComboBox()
        self.backend.addItems(["auto", "gptqmodel", "exllamav2"])
        for name, widget, label in (
            ("system_prompt", self.system_prompt, "System prompt"),
            ("temperature", self.temperature, "Temperature"),
            ("top_p", self.top_p, "Top p"),
            ("top_k", self.top_k, "Top k"),
            ("min_p", self.min_p, "Min p"),
            ("repetition_penalty", self.repetition_penalty, "Repetition penalty"),
            ("max_new_tokens", self.max_new_tokens, "Max new tokens"),
            ("seed", self.seed, "Seed"),
            ("context_length", self.context_length, "Context length"),
            ("cache_type", self.cache_type, "KV cache"),
            ("backend", self.backend, "Backend"),
        ):
            self.fields[name] = widget
            source = QLabel()
            source.setStyleSheet(f"color: {theme.muted_text().name()};")
            source.setMinimumWidth(56)
            self.sources[name] = source
            row = QHBoxLayout()
            row.addWidget(widget, 1)
            row.addWidget(source)
            form.addRow(label, row)
            signal: Any = None
            if isinstance(widget, QSpinBox | QDoubleSpinBox):
                signal = widget.valueChanged
            elif isinstance(widget, QComboBox):
                signal = widget.currentTextChanged
            elif isinstance(widget, QLineEdit):
                signal = widget.textEdited
            if signal is not None:
                signal.connect(lambda *_a, n=name: self._edited(n))
        self.reload_note = QLabel("Context length, KV cache and backend apply when the model is reloaded.")
        self.reload_note.setWordWrap(True)
        self.reload_note.setStyleSheet(f"color: {theme.warning_color().name()};")
        self.reload_note.setVisible(False)
        layout.addWidget(self.reload_note)
        buttons = QHBoxLayout()
        self.save_button = QPushButton("Save settings for this model")
        self.reset_button = QPushButton("Reset to model defaults")
        self.reload_button = QPushButton("Reload model")
        self.save_button.clicked.connect(self.save_requested)
        self.reset_button.clicked.connect(self.reset_requested)
        self.reload_button.clicked.connect(self.reload_requested)
        layout.addWidget(self.save_button)
        buttons.addWidget(self.reset_button)
        buttons.addWidget(self.reload_button)
        layout.addLayout(buttons)
        layout.addStretch(1)
        self.setEnabled(False)

    def _edited(self, name: str) -> None:
        if not self._populating:
            self.sources[name].setText(_SOURCE_TEXT[SettingSource.CHAT])
            if name in RELOAD_FIELDS:
                self.reload_note.setVisible(True)
            self.changed.emit(name)

    def show_settings(self, effective: EffectiveSettings, *, remote: bool = False) -> None:
        """Fill every field with its effective value and source."""
        self._populating = True
        try:
            for name in self.fields:
                sourced = effective[name]
                value = sourced.value
                widget = self.fields[name]
                if name == "system_prompt":
                    self.system_prompt.setPlainText(value or "")
                elif name == "seed":
                    self.seed.setText("" if value is None else str(value))
                elif name == "context_length":
                    self.context_length.setValue(int(value or 0))
                elif isinstance(widget, QComboBox):
                    widget.setCurrentText(str(value))
                elif isinstance(widget, QSpinBox):
                    widget.setValue(int(value))
                elif isinstance(widget, QDoubleSpinBox):
                    widget.setValue(float(value))
                self.sources[name].setText(_SOURCE_TEXT[sourced.source])
            for name in ("cache_type", "backend"):
                self.fields[name].setEnabled(not remote)
        finally:
            self._populating = False
        self.reload_note.setVisible(False)

    def value(self, name: str) -> Any:
        """The field's value as a settings layer holds it."""
        widget = self.fields[name]
        if name == "system_prompt":
            return self.system_prompt.toPlainText()
        if name == "seed":
            text = self.seed.text().strip()
            try:
                return int(text) if text else None
            except ValueError:
                return None
        if name == "context_length":
            return self.context_length.value() or None
        if isinstance(widget, QComboBox):
            return widget.currentText()
        if isinstance(widget, QSpinBox):
            return widget.value()
        if isinstance(widget, QDoubleSpinBox):
            return round(widget.value(), 4)
        return None


def layer_with(layer: ModelSettings, name: str, value: Any) -> ModelSettings:
    """``layer`` with one field set (None clears it)."""
    from dataclasses import replace

    return replace(layer, **{name: value})


# -- dialogs -----------------------------------------------------------------------------------------


class PromptPreviewDialog(QDialog):
    """The exact text the model receives, with the template and token count."""

    def __init__(self, preview: PromptPreview, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Prompt preview")
        self.resize(760, 560)
        layout = QVBoxLayout(self)
        info = QLabel(
            f"Template <b>{preview.template}</b> — {preview.template_source}: {preview.template_detail}<br>"
            f"{preview.token_count} tokens; {len(preview.plan.dropped)} message(s) out of context; "
            f"stop strings: {', '.join(repr(s) for s in preview.stop_strings) or 'none'}"
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


class EndpointDialog(QDialog):
    """Add or edit a saved OpenAI-compatible endpoint; the API key goes to the OS keyring only."""

    def __init__(
        self,
        endpoint: Endpoint | None = None,
        *,
        save: Callable[[Endpoint, str | None], Endpoint] | None = None,
        test: Callable[[Endpoint, str | None], None] | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        from app.chat.templates import template_names

        self.setWindowTitle("Edit endpoint" if endpoint else "New endpoint")
        self._save = save
        self._test = test
        self.saved: Endpoint | None = None
        form = QFormLayout(self)
        self.name = QLineEdit(endpoint.name if endpoint else "")
        self.base_url = QLineEdit(endpoint.base_url if endpoint else "")
        self.base_url.setPlaceholderText("http://gpu-box:8000/v1")
        self.model = QLineEdit((endpoint.model or "") if endpoint else "")
        self.model.setPlaceholderText("the server's only model")
        self.api_key = QLineEdit()
        self.api_key.setEchoMode(QLineEdit.EchoMode.Password)
        self.api_key.setPlaceholderText("unchanged" if endpoint else "none")
        self.clear_key = QCheckBox("Remove the stored key")
        self.mode = QComboBox()
        self.mode.addItem("The server applies the model's template", "server")
        self.mode.addItem("QuantDesk renders the prompt", "quantdesk")
        if endpoint is not None:
            self.mode.setCurrentIndex(self.mode.findData(endpoint.template_mode.value))
        self.template = QComboBox()
        self.template.addItems(template_names())
        self.template.setCurrentText((endpoint.template if endpoint else None) or "ChatML")
        self.context = QSpinBox()
        self.context.setRange(0, 10_000_000)
        self.context.setSpecialValueText("as the server says")
        self.context.setValue((endpoint.context_length or 0) if endpoint else 0)
        form.addRow("Name", self.name)
        form.addRow("Base URL", self.base_url)
        form.addRow("Model id", self.model)
        form.addRow("API key", self.api_key)
        form.addRow("", self.clear_key)
        form.addRow("Prompt", self.mode)
        form.addRow("QuantDesk template", self.template)
        form.addRow("Context length", self.context)
        self.status = QLabel()
        self.status.setWordWrap(True)
        form.addRow(self.status)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel
        )
        self.test_button = buttons.addButton("Test connection", QDialogButtonBox.ButtonRole.ActionRole)
        self.test_button.clicked.connect(self._run_test)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)
        self._original = endpoint

    def endpoint(self) -> Endpoint:
        """The endpoint as filled in (unchecked)."""
        from dataclasses import replace

        from app.remote.endpoints import Endpoint, TemplateMode

        base = self._original or Endpoint(name="", base_url="")
        return replace(
            base,
            name=self.name.text().strip(),
            base_url=self.base_url.text().strip(),
            model=self.model.text().strip() or None,
            template_mode=TemplateMode(self.mode.currentData()),
            template=self.template.currentText() or None,
            context_length=self.context.value() or None,
        )

    def api_key_value(self) -> str | None:
        """The key typed (None: keep the stored one unless "remove" is ticked, then "")."""
        typed = self.api_key.text().strip()
        if typed:
            return typed
        return "" if self.clear_key.isChecked() else None

    def _run_test(self) -> None:
        if self._test is not None:
            self.status.setText("Testing…")
            self._test(self.endpoint(), self.api_key_value())

    def show_status(self, text: str, ok: bool) -> None:
        """The result of a test."""
        color = theme.muted_text() if ok else theme.error_color()
        self.status.setStyleSheet(f"color: {color.name()};")
        self.status.setText(text)

    def accept(self) -> None:
        if self._save is not None:
            from app.errors import QuantDeskError

            try:
                self.saved = self._save(self.endpoint(), self.api_key_value())
            except QuantDeskError as exc:
                self.show_status(exc.user_message, False)
                return
        super().accept()
