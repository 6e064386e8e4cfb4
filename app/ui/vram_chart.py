"""A small custom-painted bar chart of one branch's memory need per backend.

Each backend gets a stacked bar (weights, KV cache, prefill, buffers, reserve, CUDA context) on a common
scale, with a dashed marker at the memory that is free (the largest GPU's, or RAM on a CPU run).
"""

from __future__ import annotations

from PySide6.QtCore import QRectF, QSize, Qt
from PySide6.QtGui import QColor, QFontMetrics, QPainter, QPaintEvent, QPalette, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

from app.catalog.table import BranchRow
from app.hardware import Hardware
from app.ui import theme
from app.units import format_size

_BAR_HEIGHT = 14
_GAP = 6


class VramChart(QWidget):
    """Stacked bars of :meth:`VramBreakdown.parts` for every backend of one row."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._row: BranchRow | None = None
        self._hardware: Hardware | None = None
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setMinimumWidth(260)

    def set_row(self, row: BranchRow | None, hardware: Hardware | None) -> None:
        """Show ``row`` (None clears the chart)."""
        self._row, self._hardware = row, hardware
        self.updateGeometry()
        self.update()

    def _line_height(self) -> int:
        return QFontMetrics(self.font()).height()

    def _bars(self) -> int:
        return len(self._row.backends) if self._row else 0

    def _legend_lines(self, width: int) -> int:
        """How many lines the legend wraps to at ``width`` (as paintEvent lays it out)."""
        metrics = QFontMetrics(self.font())
        lines, x = 1, 0
        for label in theme.PART_LABELS.values():
            item_width = 14 + metrics.horizontalAdvance(label) + 14
            if x and x + item_width > width:
                lines, x = lines + 1, 0
            x += item_width
        return lines

    def hasHeightForWidth(self) -> bool:
        return True

    def heightForWidth(self, width: int) -> int:
        line = self._line_height()
        if not self._row:
            return line + 8
        legend = self._legend_lines(width - 2) * (line + 2)
        return self._bars() * (line + _BAR_HEIGHT + _GAP) + legend + line + 14

    def sizeHint(self) -> QSize:
        return QSize(360, self.heightForWidth(max(self.width(), 260)))

    def minimumSizeHint(self) -> QSize:
        return QSize(260, self.sizeHint().height())

    def _capacity(self) -> tuple[int, str] | None:
        row, hw = self._row, self._hardware
        if row is None or hw is None:
            return None
        if any(a.on_cpu for a in row.backends):
            return hw.ram_available_bytes, "RAM free"
        if hw.gpus:
            best = max(hw.gpus, key=lambda g: g.free_bytes)
            return best.free_bytes, f"GPU {best.index} free"
        return None

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        palette = self.palette()
        text_color = palette.color(QPalette.ColorRole.WindowText)
        muted = theme.muted_text(palette)
        metrics = QFontMetrics(self.font())
        line = metrics.height()
        row = self._row
        if row is None or not any(a.vram for a in row.backends):
            painter.setPen(muted)
            painter.drawText(
                self.rect(), int(Qt.AlignmentFlag.AlignLeft), "No memory estimate for this branch."
            )
            return
        width = self.width() - 2
        totals = [a.vram.total for a in row.backends if a.vram]
        capacity = self._capacity()
        # Keep the free-memory marker on the chart unless it dwarfs the bars (then it is written, not drawn).
        scale_max = max(totals)
        show_marker = capacity is not None and capacity[0] <= scale_max * 4
        if capacity and show_marker:
            scale_max = max(scale_max, capacity[0])
        y = 0
        for assessment in row.backends:
            vram = assessment.vram
            label = assessment.display_name
            if vram is None:
                value = "no estimate"
            else:
                value = format_size(vram.total) + (" RAM" if assessment.on_cpu else "")
            if not assessment.compatibility.compatible:
                value += " · cannot run here"
            painter.setPen(text_color)
            painter.drawText(0, y, width, line, int(Qt.AlignmentFlag.AlignLeft), label)
            painter.setPen(muted if not assessment.compatibility.compatible else text_color)
            painter.drawText(0, y, width, line, int(Qt.AlignmentFlag.AlignRight), value)
            y += line + 2
            track = QRectF(0, y, width, _BAR_HEIGHT)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(palette.color(QPalette.ColorRole.AlternateBase).darker(108))
            painter.drawRoundedRect(track, 3, 3)
            if vram is not None:
                x = 0.0
                for part, amount in vram.parts().items():
                    if amount <= 0:
                        continue
                    w = max(1.0, width * amount / scale_max)
                    color = QColor(theme.PART_COLORS[part])
                    if not assessment.compatibility.compatible:
                        color.setAlpha(110)
                    painter.setBrush(color)
                    painter.drawRect(QRectF(x, y, w, _BAR_HEIGHT))
                    x += w
            if capacity and show_marker:
                mx = width * capacity[0] / scale_max
                pen = QPen(text_color, 1.5, Qt.PenStyle.DashLine)
                painter.setPen(pen)
                painter.drawLine(int(mx), int(y - 2), int(mx), int(y + _BAR_HEIGHT + 2))
            y += _BAR_HEIGHT + _GAP
        # Legend, wrapped to the width, then the free-memory note on its own line.
        x = 0
        y += 2
        for part, label in theme.PART_LABELS.items():
            item_width = 14 + metrics.horizontalAdvance(label) + 14
            if x and x + item_width > width:
                x, y = 0, y + line + 2
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(QColor(theme.PART_COLORS[part]))
            painter.drawRoundedRect(QRectF(x, y + line / 2 - 5, 10, 10), 2, 2)
            painter.setPen(text_color)
            painter.drawText(int(x + 14), int(y), width, line, int(Qt.AlignmentFlag.AlignLeft), label)
            x += item_width
        if capacity:
            y += line + 2
            marker = "dashed line: " if show_marker else ""
            note = f"{marker}{capacity[1]} {format_size(capacity[0])}"
            painter.setPen(muted)
            painter.drawText(0, int(y), width, line, int(Qt.AlignmentFlag.AlignLeft), note)
        painter.end()
