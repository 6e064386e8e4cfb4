"""The strip at the top of the window where every error report appears: a human message, the
technical details collapsed behind a toggle, and a dismiss button. It never blocks the window."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QFontDatabase
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.ui import theme
from app.ui.error_center import ErrorCenter, ErrorReport


class ErrorBanner(QFrame):
    """Shows the latest :class:`ErrorReport` (and how many came before it, unseen)."""

    def __init__(self, center: ErrorCenter, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("errorBanner")
        self.current: ErrorReport | None = None
        self.unseen = 0
        layout = QVBoxLayout(self)
        layout.setContentsMargins(12, 8, 8, 8)
        layout.setSpacing(4)
        row = QHBoxLayout()
        self.icon = QLabel("⚠")
        font = self.icon.font()
        font.setPointSizeF(font.pointSizeF() * 1.3)
        self.icon.setFont(font)
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.message.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self.details_button = QToolButton()
        self.details_button.setText("Details")
        self.details_button.setCheckable(True)
        self.details_button.setArrowType(Qt.ArrowType.RightArrow)
        self.details_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.details_button.setAutoRaise(True)
        self.details_button.toggled.connect(self._toggle_details)
        self.close_button = QToolButton()
        self.close_button.setText("✕")
        self.close_button.setToolTip("Dismiss")
        self.close_button.setAutoRaise(True)
        self.close_button.clicked.connect(self.dismiss)
        row.addWidget(self.icon, 0, Qt.AlignmentFlag.AlignTop)
        row.addWidget(self.message, 1)
        row.addWidget(self.details_button, 0, Qt.AlignmentFlag.AlignTop)
        row.addWidget(self.close_button, 0, Qt.AlignmentFlag.AlignTop)
        layout.addLayout(row)
        self.details = QPlainTextEdit()
        self.details.setReadOnly(True)
        self.details.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.details.setMaximumHeight(160)
        self.details.hide()
        layout.addWidget(self.details)
        self._restyle()
        self.hide()
        center.reported.connect(self.show_report)

    def _restyle(self) -> None:
        dark = theme.is_dark(self.palette())
        background, border = ("#4a2224", "#8c3a3d") if dark else ("#fdecea", "#f1b0aa")
        self.setStyleSheet(
            f"#errorBanner {{ background: {background}; border: 1px solid {border}; border-radius: 6px; }}"
        )

    def show_report(self, report: ErrorReport) -> None:
        """Show ``report`` (replacing the one shown; the count of earlier ones is kept)."""
        if self.current is not None and self.isVisible():
            self.unseen += 1
        self.current = report
        more = f"  (+{self.unseen} earlier)" if self.unseen else ""
        self.message.setText(report.message + more)
        self.details.setPlainText(report.detail)
        self.details_button.setVisible(bool(report.detail))
        self.details_button.setChecked(False)
        self._restyle()
        self.show()

    def dismiss(self) -> None:
        """Hide the banner and forget the shown reports."""
        self.current = None
        self.unseen = 0
        self.details_button.setChecked(False)
        self.hide()

    def _toggle_details(self, shown: bool) -> None:
        self.details_button.setArrowType(Qt.ArrowType.DownArrow if shown else Qt.ArrowType.RightArrow)
        self.details.setVisible(shown)
