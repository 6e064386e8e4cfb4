"""The branch table's painters: fit verdicts as coloured pills, the Download cell as a push button.

Both read what to paint from the model's roles (:data:`~app.ui.models.branch_model.FIT_ROLE`,
:data:`~app.ui.models.branch_model.BUTTON_ROLE`); a click on an enabled button emits the row's branch
(:data:`~app.ui.models.branch_model.BRANCH_ROLE`). The search results reuse :class:`BadgeDelegate`.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QEvent, QPersistentModelIndex, QRect, QSize, Qt, Signal
from PySide6.QtGui import QFont, QMouseEvent, QPainter, QPalette
from PySide6.QtWidgets import (
    QApplication,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionButton,
    QStyleOptionViewItem,
    QWidget,
)

from app.catalog.fit import FitStatus
from app.ui import theme
from app.ui.models.branch_model import BRANCH_ROLE, BUTTON_ROLE, FIT_ROLE, Index, fit_status


class BadgeDelegate(QStyledItemDelegate):
    """Paints a fit verdict as a coloured pill (green fits, amber tight, red doesn't fit, blue CPU only)."""

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: Index) -> None:
        status = fit_status(index.data(FIT_ROLE))
        if status is None or status is FitStatus.UNKNOWN:
            super().paint(painter, option, index)
            return
        style = option.widget.style() if option.widget else QApplication.style()
        opt = QStyleOptionViewItem(option)
        self.initStyleOption(opt, index)
        opt.text = ""
        style.drawControl(QStyle.ControlElement.CE_ItemViewItem, opt, painter, opt.widget)
        label = theme.FIT_LABELS[status]
        background, text = theme.badge_colors(status, option.palette)
        rect: QRect = option.rect
        metrics = option.fontMetrics
        width = min(rect.width() - 8, metrics.horizontalAdvance(label) + 16)
        height = min(rect.height() - 6, metrics.height() + 4)
        pill = QRect(rect.x() + 4, rect.y() + (rect.height() - height) // 2, width, height)
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(background)
        painter.drawRoundedRect(pill, height / 2, height / 2)
        painter.setPen(text)
        font = QFont(option.font)
        font.setBold(True)
        painter.setFont(font)
        painter.drawText(pill, int(Qt.AlignmentFlag.AlignCenter), label)
        painter.restore()

    def sizeHint(self, option: QStyleOptionViewItem, index: Index) -> QSize:
        size = super().sizeHint(option, index)
        status = fit_status(index.data(FIT_ROLE))
        if status is not None:
            width = option.fontMetrics.horizontalAdvance(theme.FIT_LABELS[status]) + 28
            size.setWidth(max(size.width(), width))
        return size


class ButtonDelegate(QStyledItemDelegate):
    """Paints a push button from :data:`BUTTON_ROLE`; a click emits the row's :data:`BRANCH_ROLE`."""

    clicked = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._pressed: QPersistentModelIndex | None = None

    def _button_rect(self, rect: QRect, label: str, option: QStyleOptionViewItem) -> QRect:
        metrics = option.fontMetrics
        width = min(rect.width() - 8, metrics.horizontalAdvance(label) + 24)
        height = min(rect.height() - 4, metrics.height() + 8)
        return QRect(rect.x() + 4, rect.y() + (rect.height() - height) // 2, width, height)

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: Index) -> None:
        value = index.data(BUTTON_ROLE)
        if not value:
            super().paint(painter, option, index)
            return
        label, enabled = value
        style = option.widget.style() if option.widget else QApplication.style()
        opt = QStyleOptionViewItem(option)
        self.initStyleOption(opt, index)
        opt.text = ""
        style.drawControl(QStyle.ControlElement.CE_ItemViewItem, opt, painter, opt.widget)
        rect: QRect = option.rect
        if not enabled:
            painter.save()
            selected = bool(option.state & QStyle.StateFlag.State_Selected)
            color = option.palette.color(
                QPalette.ColorRole.HighlightedText if selected else QPalette.ColorRole.Text
            )
            if label.startswith("Downloaded") and not selected:
                color = theme.badge_colors(FitStatus.FITS, option.palette)[0]
            painter.setPen(color)
            painter.drawText(
                rect.adjusted(8, 0, -4, 0),
                int(Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft),
                label,
            )
            painter.restore()
            return
        button = QStyleOptionButton()
        button.rect = self._button_rect(rect, label, option)
        button.text = label
        button.palette = option.palette
        button.state = QStyle.StateFlag.State_Enabled | (
            QStyle.StateFlag.State_Sunken
            if self._pressed == QPersistentModelIndex(index)
            else QStyle.StateFlag.State_Raised
        )
        style.drawControl(QStyle.ControlElement.CE_PushButton, button, painter, opt.widget)

    def sizeHint(self, option: QStyleOptionViewItem, index: Index) -> QSize:
        size = super().sizeHint(option, index)
        value = index.data(BUTTON_ROLE)
        if value:
            width = option.fontMetrics.horizontalAdvance(value[0]) + 36
            size.setWidth(max(size.width(), width))
            size.setHeight(max(size.height(), option.fontMetrics.height() + 12))
        return size

    def editorEvent(self, event: QEvent, model: Any, option: QStyleOptionViewItem, index: Index) -> bool:
        value = index.data(BUTTON_ROLE)
        if not value or not value[1] or not isinstance(event, QMouseEvent):
            return super().editorEvent(event, model, option, index)
        inside = self._button_rect(option.rect, value[0], option).contains(event.position().toPoint())
        if event.type() == QEvent.Type.MouseButtonPress and inside:
            self._pressed = QPersistentModelIndex(index)
            return True
        if event.type() == QEvent.Type.MouseButtonRelease:
            pressed, self._pressed = self._pressed, None
            if inside and pressed == QPersistentModelIndex(index):
                self.clicked.emit(str(index.data(BRANCH_ROLE)))
                return True
        return False
