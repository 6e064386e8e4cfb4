"""The model's settings, each field with the layer its value comes from (default, model, profile, this
chat). With no model loaded it shows the selected model's saved values, or nothing: never a spin box's
placeholder number."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from app.chat.profiles import EffectiveSettings, ModelSettings, SettingSource
from app.ui import theme

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
        self._blanks: set[str] = set()  # fields showing nothing (no model: nothing saved for them)
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
            self._blanks.clear()
            for name in self.fields:
                sourced = effective[name]
                self._set(name, sourced.value)
                self.sources[name].setText(_SOURCE_TEXT[sourced.source])
            for name in ("cache_type", "backend"):
                self.fields[name].setEnabled(not remote)
        finally:
            self._populating = False
        self.reload_note.setVisible(False)

    def show_saved(self, effective: EffectiveSettings | None) -> None:
        """No model loaded: the values saved for the selected model (its profile, its own files), and
        nothing for a field neither sets (None: no model selected)."""
        self._populating = True
        try:
            for name, widget in self.fields.items():
                sourced = effective[name] if effective is not None else None
                if sourced is None or sourced.source is SettingSource.DEFAULT or sourced.value is None:
                    self._blank(widget)
                    self._blanks.add(name)
                    self.sources[name].setText("")
                    continue
                self._blanks.discard(name)
                self._set(name, sourced.value)
                self.sources[name].setText(_SOURCE_TEXT[sourced.source])
        finally:
            self._populating = False
        self.reload_note.setVisible(False)

    def showEvent(self, event: QShowEvent) -> None:
        # A spin box writes its value back into its text when shown: blank the empty ones again.
        super().showEvent(event)
        self._populating = True
        try:
            for name in self._blanks:
                if isinstance(self.fields[name], QSpinBox | QDoubleSpinBox):
                    self._blank(self.fields[name])
        finally:
            self._populating = False

    @staticmethod
    def _blank(widget: QWidget) -> None:
        if isinstance(widget, QSpinBox | QDoubleSpinBox):
            widget.lineEdit().clear()  # shows nothing until a value is set again
        elif isinstance(widget, QComboBox):
            widget.setCurrentIndex(-1)
        elif isinstance(widget, QLineEdit | QPlainTextEdit):
            widget.clear()

    def shown_text(self, name: str) -> str:
        """What a field shows (the text of its box)."""
        widget = self.fields[name]
        if isinstance(widget, QSpinBox | QDoubleSpinBox):
            return widget.lineEdit().text()
        if isinstance(widget, QComboBox):
            return widget.currentText()
        if isinstance(widget, QPlainTextEdit):
            return widget.toPlainText()
        if isinstance(widget, QLineEdit):
            return widget.text()
        return ""

    def _set(self, name: str, value: Any) -> None:
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
    return replace(layer, **{name: value})
