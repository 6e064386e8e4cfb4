"""Colours and style: dark or light following the system, and the fit badge colours.

Qt reports the system's colour scheme (``QStyleHints.colorScheme``); with the Fusion style a dark
scheme gets a dark palette, and a scheme change at run time switches the palette live.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QGuiApplication, QIcon, QPalette
from PySide6.QtWidgets import QApplication

from app.catalog.fit import FitStatus

# (background, text) per badge, for a light and a dark window.
_BADGES_LIGHT: dict[FitStatus, tuple[str, str]] = {
    FitStatus.FITS: ("#1e7d34", "#ffffff"),
    FitStatus.TIGHT: ("#c77c00", "#ffffff"),
    FitStatus.NO_FIT: ("#c62828", "#ffffff"),
    FitStatus.CPU_ONLY: ("#1565c0", "#ffffff"),
    FitStatus.UNKNOWN: ("#8a8f98", "#ffffff"),
}
_BADGES_DARK: dict[FitStatus, tuple[str, str]] = {
    FitStatus.FITS: ("#2e9e4a", "#0b1a0f"),
    FitStatus.TIGHT: ("#f0a82a", "#1f1400"),
    FitStatus.NO_FIT: ("#ef5350", "#1f0505"),
    FitStatus.CPU_ONLY: ("#4f9ef0", "#04111f"),
    FitStatus.UNKNOWN: ("#6b717b", "#f0f0f0"),
}
# VRAM breakdown parts, in VramBreakdown.parts() order.
PART_COLORS = {
    "weights": "#5b8def",
    "kv_cache": "#2fb380",
    "prefill": "#e3a23b",
    "buffers": "#c7793a",
    "reserve": "#8c95a3",
    "cuda_context": "#a877d9",
}
PART_LABELS = {
    "weights": "Weights",
    "kv_cache": "KV cache",
    "prefill": "Prefill",
    "buffers": "Buffers",
    "reserve": "Allocator reserve",
    "cuda_context": "CUDA context",
}
FIT_LABELS = {
    FitStatus.FITS: "Fits",
    FitStatus.TIGHT: "Tight",
    FitStatus.NO_FIT: "Doesn't fit",
    FitStatus.CPU_ONLY: "CPU only",
    FitStatus.UNKNOWN: "—",
}


def is_dark(palette: QPalette | None = None) -> bool:
    """Whether the window background is dark."""
    pal = palette or QGuiApplication.palette()
    return pal.color(QPalette.ColorRole.Window).lightness() < 128


def badge_colors(status: FitStatus, palette: QPalette | None = None) -> tuple[QColor, QColor]:
    """(background, text) of a fit badge, readable on the current palette."""
    table = _BADGES_DARK if is_dark(palette) else _BADGES_LIGHT
    background, text = table[status]
    return QColor(background), QColor(text)


def muted_text(palette: QPalette | None = None) -> QColor:
    """A secondary text colour that still reads on the window background."""
    pal = palette or QGuiApplication.palette()
    return pal.color(QPalette.ColorGroup.Active, QPalette.ColorRole.PlaceholderText)


def warning_color(palette: QPalette | None = None) -> QColor:
    """Text colour for warnings and stale markers."""
    return QColor("#f0a82a") if is_dark(palette) else QColor("#a15c00")


def error_color(palette: QPalette | None = None) -> QColor:
    """Text colour for inline errors."""
    return QColor("#ff7b72") if is_dark(palette) else QColor("#b3261e")


def dark_palette() -> QPalette:
    """A neutral dark palette for the Fusion style."""
    pal = QPalette()
    base, window, text = QColor("#1e1f22"), QColor("#2b2d30"), QColor("#e6e6e6")
    pal.setColor(QPalette.ColorRole.Window, window)
    pal.setColor(QPalette.ColorRole.WindowText, text)
    pal.setColor(QPalette.ColorRole.Base, base)
    pal.setColor(QPalette.ColorRole.AlternateBase, QColor("#26282b"))
    pal.setColor(QPalette.ColorRole.ToolTipBase, QColor("#3c3f41"))
    pal.setColor(QPalette.ColorRole.ToolTipText, text)
    pal.setColor(QPalette.ColorRole.Text, text)
    pal.setColor(QPalette.ColorRole.Button, QColor("#3a3d41"))
    pal.setColor(QPalette.ColorRole.ButtonText, text)
    pal.setColor(QPalette.ColorRole.BrightText, QColor("#ff6b6b"))
    pal.setColor(QPalette.ColorRole.Highlight, QColor("#3d7be0"))
    pal.setColor(QPalette.ColorRole.HighlightedText, QColor("#ffffff"))
    pal.setColor(QPalette.ColorRole.Link, QColor("#6ea8ff"))
    pal.setColor(QPalette.ColorRole.PlaceholderText, QColor("#9a9da3"))
    pal.setColor(QPalette.ColorRole.Mid, QColor("#4a4d52"))
    pal.setColor(QPalette.ColorRole.Midlight, QColor("#45484c"))
    pal.setColor(QPalette.ColorRole.Dark, QColor("#17181a"))
    for role in (QPalette.ColorRole.Text, QPalette.ColorRole.ButtonText, QPalette.ColorRole.WindowText):
        pal.setColor(QPalette.ColorGroup.Disabled, role, QColor("#7a7d82"))
    return pal


def apply_system_theme(app: QApplication, force_dark: bool | None = None) -> None:
    """Fusion style with the system's scheme (or ``force_dark``), and follow later scheme changes."""
    app.setStyle("Fusion")

    def apply() -> None:
        scheme = app.styleHints().colorScheme()
        dark = force_dark if force_dark is not None else scheme == Qt.ColorScheme.Dark
        app.setPalette(dark_palette() if dark else app.style().standardPalette())

    apply()
    if force_dark is None:
        app.styleHints().colorSchemeChanged.connect(lambda _scheme: apply())


def chat_icon(size: int = 32) -> QIcon:
    """A speech bubble (Qt's standard icons have none; the information icon said the wrong thing)."""
    from PySide6.QtCore import QPointF, QRectF
    from PySide6.QtGui import QPainter, QPainterPath, QPixmap

    pixmap = QPixmap(size, size)
    pixmap.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pixmap)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    s = size / 32
    bubble = QPainterPath()
    bubble.addRoundedRect(QRectF(2 * s, 4 * s, 28 * s, 19 * s), 6 * s, 6 * s)
    tail = QPainterPath()
    tail.moveTo(QPointF(8 * s, 21 * s))
    tail.lineTo(QPointF(7 * s, 29 * s))
    tail.lineTo(QPointF(15 * s, 22 * s))
    tail.closeSubpath()
    painter.setPen(Qt.PenStyle.NoPen)
    painter.setBrush(QColor("#2fb380"))  # green: reads on the sidebar's blue selection too
    painter.drawPath(bubble.united(tail))
    painter.setBrush(QColor("#ffffff"))
    for x in (10, 16, 22):
        painter.drawEllipse(QPointF(x * s, 13.5 * s), 1.8 * s, 1.8 * s)
    painter.end()
    return QIcon(pixmap)
