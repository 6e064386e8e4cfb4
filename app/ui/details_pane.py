"""The selected branch in detail: VRAM breakdown chart, fit, backends, template, description, warnings."""

from __future__ import annotations

import html

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QFontDatabase
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QScrollArea,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from app.catalog.table import BranchRow
from app.hardware import Hardware
from app.ui import theme
from app.ui.models.branch_texts import measured_lines, parts_lines, split_lines
from app.ui.vram_chart import VramChart
from app.units import format_size


def fit_text(row: BranchRow) -> str:
    """The verdict, the split over GPUs, and for the default backend which parts are fixed and which
    grow (with the context or with the longest prompt), and what the user's own measurement said."""
    memory = "RAM" if any(a.on_cpu for a in row.backends) else "VRAM"
    plan = f"At {row.context} tokens of context, prompts up to {row.prompt} tokens ({memory})"
    lines = [html.escape(f"{plan}: {row.fit.message}")]
    lines += [html.escape(line) for line in split_lines(row.fit)]
    if row.best_backend:
        best = row.backend(row.best_backend)
        if best.vram is not None:
            lines.append(f"<b>{html.escape(best.display_name)}</b>, part by part:")
            lines += [f"&nbsp;&nbsp;{html.escape(line)}" for line in parts_lines(best)]
    for other in row.backends:
        if other.name != row.best_backend and other.measurement is not None:
            lines.append(f"<b>{html.escape(other.display_name)}</b>:")
            lines += [f"&nbsp;&nbsp;{html.escape(line)}" for line in measured_lines(other)]
    return "<br>".join(lines)


def _heading(text: str) -> QLabel:
    label = QLabel(text)
    font = label.font()
    font.setBold(True)
    label.setFont(font)
    return label


def _wrapping(text: str = "") -> QLabel:
    label = QLabel(text)
    label.setWordWrap(True)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    label.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Minimum)
    return label


class _Body(QWidget):
    """The scrolled content: its minimum height is the one its width needs, not the one its narrowest
    possible width would need (word-wrapped labels would otherwise force a scroll bar)."""

    def minimumSizeHint(self) -> QSize:
        hint = super().minimumSizeHint()
        layout = self.layout()
        if layout is None or not layout.hasHeightForWidth():
            return hint
        return QSize(hint.width(), layout.heightForWidth(max(self.width(), hint.width())))


class DetailsPane(QScrollArea):
    """Everything known about one branch, laid out in two columns."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        body = _Body()
        self.setWidget(body)
        outer = QVBoxLayout(body)
        outer.setContentsMargins(8, 6, 8, 6)
        self.title = QLabel()
        font = self.title.font()
        font.setPointSizeF(font.pointSizeF() * 1.15)
        font.setBold(True)
        self.title.setFont(font)
        self.title.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.facts = _wrapping()
        outer.addWidget(self.title)
        outer.addWidget(self.facts)

        columns = QHBoxLayout()
        columns.setSpacing(24)
        outer.addLayout(columns, 1)

        memory = QVBoxLayout()
        memory.addWidget(_heading("Memory needed"))
        self.chart = VramChart()
        memory.addWidget(self.chart)
        self.fit = _wrapping()
        self.fit.setTextFormat(Qt.TextFormat.RichText)
        memory.addWidget(self.fit)
        memory.addStretch(1)
        columns.addLayout(memory, 5)

        notes = QVBoxLayout()
        notes.addWidget(_heading("Backends"))
        self.backends = _wrapping()
        self.backends.setTextFormat(Qt.TextFormat.RichText)
        notes.addWidget(self.backends)
        notes.addWidget(_heading("Description"))
        self.description = _wrapping()
        notes.addWidget(self.description)
        self.warnings = _wrapping()
        self.warnings.setTextFormat(Qt.TextFormat.RichText)
        notes.addWidget(self.warnings)
        notes.addStretch(1)
        columns.addLayout(notes, 4)

        template = QVBoxLayout()
        self.template_heading = _heading("Prompt template")
        self.template_source = _wrapping()
        self.template_text = QPlainTextEdit()
        self.template_text.setReadOnly(True)
        self.template_text.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.template_text.setMaximumHeight(130)
        self.template_text.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)
        self.template_text.setPlaceholderText("No template text is known for this branch.")
        template.addWidget(self.template_heading)
        template.addWidget(self.template_source)
        template.addWidget(self.template_text)
        template.addStretch(1)
        columns.addLayout(template, 4)
        self.show_row(None, None)

    def show_row(self, row: BranchRow | None, hardware: Hardware | None) -> None:
        """Fill the pane from ``row`` (None: a hint to select a branch)."""
        self.chart.set_row(row, hardware)
        if row is None:
            self.title.setText("No branch selected")
            self.facts.setText(
                "Select a branch in the table to see its memory breakdown, template and notes."
            )
            for label in (self.fit, self.backends, self.template_source, self.description, self.warnings):
                label.clear()
            self.template_text.clear()
            return
        info, q = row.info, row.info.quantization
        self.title.setText(f"{info.repo_id} : {info.branch}")
        facts: list[str] = []
        if info.is_gptq:
            facts.append(f"{q.bits}-bit GPTQ" if q.bits else "GPTQ")
            facts.append(f"group size {q.group_size}" if q.group_size else "no grouping")
            if q.act_order is not None:
                facts.append("act order" if q.act_order else "no act order")
            if q.damp_percent is not None:
                facts.append(f"damp {q.damp_percent:g} %")
            if q.source:
                facts.append(f"from {q.source}")
        else:
            facts.append("not GPTQ")
        if info.dataset:
            facts.append(f"calibrated on {info.dataset}")
        if info.seq_len:
            facts.append(f"seq len {info.seq_len}")
        facts.append(f"{format_size(info.size_bytes)} in {len(info.files)} files")
        if info.architecture:
            arch = info.architecture
            facts.append(f"{arch.model_type}, {arch.layers} layers, max context {arch.max_context}")
        facts.append(f"commit {info.commit[:10]}")
        self.facts.setText(" · ".join(facts))
        self.fit.setText(fit_text(row))
        lines = []
        for a in row.backends:
            color = theme.badge_colors(a.fit.status)[0].name() if a.compatibility.compatible else None
            mark = "✓" if a.compatibility.compatible else "✗"
            name = f"<b>{html.escape(a.display_name)}</b>"
            verdict = f"<span style='color:{color}'>{mark}</span>" if color else mark
            lines.append(f"{verdict} {name}: {html.escape(a.compatibility.reason)}")
        self.backends.setText("<br>".join(lines))
        template = info.template
        name = template.name or "unknown"
        if template.name == "jinja":
            name = "the model's own chat template"
        self.template_heading.setText(f"Prompt template: {name}")
        self.template_source.setText(f"Source: {template.source}")
        self.template_text.setPlainText(template.text or "")
        description = info.description or "The model card has no description for this branch."
        if info.error:
            description = f"This branch could not be read: {info.error}"
        elif not info.is_gptq:
            description = f"Not a GPTQ branch: {info.not_gptq_reason} {info.description}".strip()
        self.description.setText(description)
        warn = theme.warning_color().name()
        self.warnings.setText(
            "<br>".join(f"<span style='color:{warn}'>⚠ {html.escape(w)}</span>" for w in info.warnings)
        )
