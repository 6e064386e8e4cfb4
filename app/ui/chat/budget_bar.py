"""The context budget: a bar of system prompt and template, history and the reply's reserve out of the
context length, a legend naming each colour, and the figures."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from PySide6.QtCore import QRectF, QSize, Qt
from PySide6.QtGui import QColor, QPainter, QPaintEvent
from PySide6.QtWidgets import QHBoxLayout, QLabel, QWidget

from app.ui import theme

if TYPE_CHECKING:
    from app.ui.chat.worker_data import Budget

# (part, colour, legend text) in bar order.
PARTS: tuple[tuple[str, str, str], ...] = (
    ("system", "#a877d9", "System prompt & template"),
    ("history", "#5b8def", "History"),
    ("reserve", "#e3a23b", "Reserved for the reply"),
)


class BudgetMeter(QWidget):
    """The bar itself."""

    COLORS: ClassVar[dict[str, str]] = {name: color for name, color, _text in PARTS}

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
            f"{b.used} / {b.context_length} tokens: system prompt and template {b.system}, "
            f"history {b.history}, reserved for the reply {b.reserve}"
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


class _Swatch(QWidget):
    def __init__(self, color: str) -> None:
        super().__init__()
        self.color = QColor(color)
        self.setFixedSize(10, 10)

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(self.color)
        painter.drawRoundedRect(QRectF(self.rect()), 2, 2)
        painter.end()


class BudgetBar(QWidget):
    """Meter, legend and ``used / context tokens``."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.meter = BudgetMeter()
        layout.addWidget(self.meter, 1)
        muted = f"color: {theme.muted_text().name()};"
        self.legend: dict[str, QLabel] = {}
        for name, color, text in PARTS:
            layout.addWidget(_Swatch(color))
            label = QLabel(text)
            label.setStyleSheet(muted)
            layout.addWidget(label)
            self.legend[name] = label
        self.label = QLabel()
        self.label.setStyleSheet(muted)
        layout.addWidget(self.label)

    def set_budget(self, budget: Budget | None) -> None:
        """Show the budget of the next prompt (None: no model)."""
        self.meter.set_budget(budget)
        if budget is None:
            self.label.setText("")
        else:
            self.label.setText(budget.error or f"{budget.used} / {budget.context_length} tokens")
        self.setToolTip(self.meter.describe())

    def describe(self) -> str:
        """The figures in words (the tooltip)."""
        return self.meter.describe()
