"""The row above the Models page's table: Back to the results, the repo's name, how fresh its table is,
a busy bar while it loads, and "Quantized versions" when its base model is known.

:func:`catalog_status` words the freshness of a shown catalog (cached, refreshed, offline, gated).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QSizePolicy, QToolButton, QWidget

from app.ui import theme

if TYPE_CHECKING:
    from app.catalog.service import RepoCatalog


def catalog_status(catalog: RepoCatalog, final: bool) -> tuple[str, bool]:
    """The status line for a shown catalog and whether it is stale (``final``: no refresh follows)."""
    if final and catalog.access_note:
        return f"🔒 {catalog.access_note}", True
    if final and not catalog.stale:
        count = len(catalog.branches)
        return f"{count} branch{'es' if count != 1 else ''} · updated {clock(catalog.fetched_at)}", False
    if final:
        return (
            f"⚠ Offline: showing the table cached {clock(catalog.fetched_at)}. {catalog.stale_reason}",
            True,
        )
    return f"Cached {clock(catalog.fetched_at)} · refreshing from the Hub…", False


def clock(timestamp: float) -> str:
    """When, in a few words: 'just now', '5 min ago', or the date and time."""
    age = time.time() - timestamp
    if age < 90:
        return "just now"
    if age < 3600:
        return f"{age / 60:.0f} min ago"
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(timestamp))


class RepoHeader(QWidget):
    """Back button, repo title, status line, busy bar and the "Quantized versions" button."""

    back_requested = Signal()
    versions_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        status = QHBoxLayout(self)
        status.setContentsMargins(0, 0, 0, 0)
        status.setSpacing(8)  # the page's spacing (the row was once a layout nested in the page's)
        self.back_button = QToolButton()
        self.back_button.setText("← Results")
        self.back_button.setToolTip("Back to the search results")
        self.back_button.clicked.connect(lambda _checked=False: self.back_requested.emit())
        self.back_button.hide()
        self.versions_button = QToolButton()
        self.versions_button.setText("Quantized versions")
        self.versions_button.clicked.connect(lambda _checked=False: self.versions_requested.emit())
        self.versions_button.hide()
        self.repo_title = QLabel()
        font = self.repo_title.font()
        font.setPointSizeF(font.pointSizeF() * 1.2)
        font.setBold(True)
        self.repo_title.setFont(font)
        self.status_label = QLabel()
        self.status_label.setWordWrap(True)
        self.status_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.busy = QProgressBar()
        self.busy.setRange(0, 0)
        self.busy.setMaximumWidth(120)
        self.busy.setMaximumHeight(10)
        self.busy.setTextVisible(False)
        self.busy.hide()
        status.addWidget(self.back_button)
        status.addWidget(self.repo_title)
        status.addSpacing(8)
        status.addWidget(self.status_label, 1)
        status.addWidget(self.busy)
        status.addWidget(self.versions_button)

    def set_title(self, text: str) -> None:
        """The repo shown (or opening, or that could not be opened); empty over the search results."""
        self.repo_title.setText(text)

    def set_status(self, text: str, stale: bool = False, error: bool = False) -> None:
        """The status line, amber when ``stale``, red on an ``error`` (its full text in the tooltip)."""
        color = theme.error_color() if error else theme.warning_color() if stale else theme.muted_text()
        self.status_label.setStyleSheet(f"color: {color.name()};")
        self.status_label.setText(text)
        self.status_label.setToolTip(text)
        self.status_label.setProperty("stale", stale)

    def set_busy(self, busy: bool) -> None:
        """Show the busy bar while a catalog loads."""
        self.busy.setVisible(busy)

    def set_back_visible(self, visible: bool) -> None:
        """Offer Back to the search results (a repo opened while there are results)."""
        self.back_button.setVisible(visible)

    def show_versions(self, base_model: str | None) -> None:
        """Offer the quantized versions of ``base_model``; None hides the button."""
        self.versions_button.setVisible(base_model is not None)
        self.versions_button.setToolTip(f"List the quantized uploads of {base_model}" if base_model else "")
