"""Paints a message: a tinted bubble with the role, the version switcher ``‹ 2/3 ›``, the actions,
the Markdown body (one QTextDocument per visible message, cached by text and width) and the stats.

Heights: a row not yet painted gets an estimate from font metrics (microseconds, no layout), so
opening a long conversation lays out nothing but what is on screen; a painted row's exact height
replaces the estimate (``sizeHintChanged``) and is cached until its text or the width changes.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Final

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, QPoint, QRect, QRectF, QSize, Qt
from PySide6.QtGui import (
    QAbstractTextDocumentLayout,
    QColor,
    QFont,
    QFontMetrics,
    QPainter,
    QTextCursor,
    QTextDocument,
)
from PySide6.QtWidgets import QStyledItemDelegate, QStyleOptionViewItem, QWidget

from app.ui import theme
from app.ui.chat.rows import ACTION_TEXT, MessageRow
from app.ui.chat.transcript_model import ROW_ROLE

MARGIN: Final = 4  # around each bubble
PAD_X: Final = 10
PAD_Y: Final = 6
GAP: Final = 4
ACTION_GAP: Final = 12
_DOC_CACHE: Final = 256  # laid-out documents kept (a screenful needs a few dozen)
_TINTS: Final = {"user": QColor("#3d7be0"), "assistant": QColor("#2fb380")}

_Index = QModelIndex | QPersistentModelIndex


@dataclass
class Layout:
    """Where each part of a painted message goes (view coordinates)."""

    bubble: QRect
    role: QRect
    body: QRect
    footer: QRect
    hits: dict[str, QRect] = field(default_factory=dict)  # action name -> its clickable rect
    version_text: QRect | None = None
    dropped: QRect | None = None


def action_label(row: MessageRow, name: str) -> str:
    """The text painted for an action (Pin reads Unpin on a pinned message)."""
    if name == "pin" and row.pinned:
        return "Unpin"
    if name == "previous_version":
        return "‹"
    if name == "next_version":
        return "›"
    return ACTION_TEXT[name][0]


class MessageDelegate(QStyledItemDelegate):
    """Paints :class:`MessageRow` items and says which action lies under a point."""

    def __init__(self, view: QWidget) -> None:
        super().__init__(view)
        self._view = view
        # id -> ((text, streaming), width, document); id -> ((text, streaming), width, exact body height)
        self._docs: OrderedDict[str, tuple[tuple[str, bool], int, QTextDocument]] = OrderedDict()
        self._heights: dict[str, tuple[tuple[str, bool, str], int, int, int]] = {}  # + footer height
        self.hovered: tuple[str, str] | None = None  # (message id, action) under the mouse
        self.width = 600
        self._font_cache: tuple[QFont, QFont, QFontMetrics, int] | None = None
        self._char_width = 8
        self._line = 16
        self._sizes: dict[str, tuple[MessageRow, int, int]] = {}  # id -> (row, width, height)
        self.rows: list[MessageRow] | None = None  # the model's rows (the view sets it)

    # -- fonts and sizes ------------------------------------------------------------------------------

    def font_changed(self) -> None:
        """Measure the view's font again (the view calls this on a font change) and forget sizes."""
        font = self._view.font()
        bold = QFont(font)
        bold.setBold(True)
        metrics = QFontMetrics(font)
        self._font_cache = (font, bold, metrics, QFontMetrics(bold).height() + 2)
        self._char_width = max(1, metrics.averageCharWidth())
        self._line = metrics.lineSpacing()
        self._sizes.clear()
        self._heights.clear()
        self._docs.clear()

    def _fonts(self) -> tuple[QFont, QFont]:
        if self._font_cache is None:
            self.font_changed()
        assert self._font_cache is not None
        return self._font_cache[0], self._font_cache[1]

    def _metrics(self) -> QFontMetrics:
        self._fonts()
        assert self._font_cache is not None
        return self._font_cache[2]

    def set_width(self, width: int) -> None:
        """The viewport's width (the view tells on resize: asking it per row costs a C++ round trip)."""
        self.width = max(120, width)

    def _width(self) -> int:
        return self.width

    def _body_width(self, width: int) -> int:
        return max(60, width - 2 * MARGIN - 2 * PAD_X)

    def document(self, row: MessageRow, width: int) -> QTextDocument:
        """The row's laid-out Markdown at ``width`` (cached by text and width)."""
        key = (row.text, row.streaming)
        cached = self._docs.get(row.id)
        if cached is not None and row.streaming:
            (shown, was_streaming), laid_out_at, grown = cached
            if was_streaming and shown.strip() and row.text.startswith(shown):
                # A streaming reply only grows: add the new text to its document (only the last paragraph
                # is laid out again) instead of building and laying out the whole reply on every repaint.
                cursor = QTextCursor(grown)
                cursor.movePosition(QTextCursor.MoveOperation.End)
                cursor.insertText(row.text[len(shown) :])
                cached = (key, laid_out_at, grown)
                self._docs[row.id] = cached
        if cached is not None and cached[0] == key:
            doc = cached[2]
            if cached[1] != width:
                doc.setTextWidth(width)
                self._docs[row.id] = (key, width, doc)
            self._docs.move_to_end(row.id)
        else:
            doc = QTextDocument()
            doc.setDocumentMargin(0)
            doc.setDefaultFont(self._fonts()[0])
            text = row.text if row.text.strip() else "…"
            if row.streaming:
                doc.setPlainText(text)  # Markdown once the reply is complete: cheaper per chunk
            else:
                doc.setMarkdown(text)
            doc.setTextWidth(width)
            self._docs[row.id] = (key, width, doc)
            while len(self._docs) > _DOC_CACHE:
                self._docs.popitem(last=False)
        return doc

    def _estimate_lines(self, text: str, width: int) -> int:
        # Average character width: no shaping, a microsecond a row; painting measures exactly.
        per_line = max(1, width // self._char_width)
        if "\n" not in text:
            return max(1, -(-len(text) // per_line))
        return sum(max(1, -(-len(p) // per_line)) for p in text.split("\n"))

    def _estimate_body(self, row: MessageRow, width: int) -> int:
        return self._estimate_lines(row.text or "…", width) * self._line

    def _known(self, row: MessageRow, width: int) -> tuple[int, int] | None:
        known = self._heights.get(row.id)
        if known is not None and known[1] == width and known[0] == (row.text, row.streaming, row.footer):
            return known[2], known[3]
        return None

    def _body_height(self, row: MessageRow, width: int) -> int:
        known = self._known(row, width)
        return known[0] if known is not None else self._estimate_body(row, width)

    def _footer_height(self, row: MessageRow, width: int) -> int:
        if not row.footer:
            return 0
        known = self._known(row, width)
        if known is not None:
            return known[1]
        return self._estimate_lines(row.footer, width) * self._line

    def _exact_footer(self, row: MessageRow, width: int) -> int:
        if not row.footer:
            return 0
        flags = int(Qt.TextFlag.TextWordWrap)
        return self._metrics().boundingRect(QRect(0, 0, width, 100_000), flags, row.footer).height()

    def _header_height(self) -> int:
        self._fonts()
        assert self._font_cache is not None
        return self._font_cache[3]

    def sizeHint(self, option: QStyleOptionViewItem, index: _Index) -> QSize:
        # Called for every row on each layout pass: kept lean (rows read straight from the model, the
        # result cached by row identity: rows are immutable and replaced when they change).
        width = self.width
        rows = self.rows
        at = index.row()
        if rows is None or not 0 <= at < len(rows):
            return QSize(width, 0)
        row = rows[at]
        cached = self._sizes.get(row.id)
        if cached is not None and cached[0] is row and cached[1] == width:
            return QSize(width, cached[2])
        body_w = self._body_width(width)
        height = 2 * MARGIN + 2 * PAD_Y + self._header_height() + GAP + self._body_height(row, body_w)
        footer = self._footer_height(row, body_w)
        if footer:
            height += GAP + footer
        self._sizes[row.id] = (row, width, height)
        return QSize(width, height)

    # -- layout ---------------------------------------------------------------------------------------

    def layout(self, rect: QRect, row: MessageRow) -> Layout:
        """Where the parts of ``row`` go inside the item rectangle ``rect``."""
        font, bold = self._fonts()
        metrics, bold_metrics = QFontMetrics(font), QFontMetrics(bold)
        bubble = rect.adjusted(MARGIN, MARGIN, -MARGIN, -MARGIN)
        left, right = bubble.left() + PAD_X, bubble.right() - PAD_X
        top = bubble.top() + PAD_Y
        header_h = self._header_height()
        who = "You" if row.role == "user" else "Assistant"
        role = QRect(left, top, bold_metrics.horizontalAdvance(who), header_h)
        out = Layout(bubble, role, QRect(), QRect())
        x = role.right() + 10
        if row.has_versions:
            for name, text in (
                ("previous_version", "‹"),
                ("version", f"{row.version[0]}/{row.version[1]}"),
                ("next_version", "›"),
            ):
                w = bold_metrics.horizontalAdvance(text) + (8 if name != "version" else 4)
                part = QRect(x, top, w, header_h)
                if name == "version":
                    out.version_text = part
                else:
                    out.hits[name] = part
                x += w
            x += 6
        if row.dropped:
            text = "out of context"
            out.dropped = QRect(x, top, metrics.horizontalAdvance(text) + 4, header_h)
        ax = right
        for name in reversed(row.actions):
            w = metrics.horizontalAdvance(action_label(row, name))
            out.hits[name] = QRect(ax - w, top, w, header_h)
            ax -= w + ACTION_GAP
        body_w = self._body_width(rect.width())
        body_top = top + header_h + GAP
        out.body = QRect(left, body_top, body_w, self._body_height(row, body_w))
        footer_h = self._footer_height(row, body_w)
        out.footer = QRect(left, out.body.bottom() + 1 + GAP, body_w, footer_h)
        return out

    def hit(self, rect: QRect, row: MessageRow, pos: QPoint) -> str | None:
        """The action under ``pos`` (view coordinates), if any."""
        for name, area in self.layout(rect, row).hits.items():
            if area.adjusted(-3, -2, 3, 2).contains(pos):
                return name
        return None

    def anchor_at(self, rect: QRect, row: MessageRow, pos: QPoint) -> str:
        """The link under ``pos`` in the body ("" when none)."""
        body = self.layout(rect, row).body
        if not body.contains(pos):
            return ""
        doc = self.document(row, body.width())
        return str(doc.documentLayout().anchorAt(pos - body.topLeft()) or "")

    # -- painting -------------------------------------------------------------------------------------

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: _Index) -> None:
        row = index.data(ROW_ROLE)
        if not isinstance(row, MessageRow):
            return
        rect = QRect(option.rect)
        body_w = self._body_width(self.width)
        doc = self.document(row, body_w)
        if self._known(row, body_w) is None:
            before = (self._body_height(row, body_w), self._footer_height(row, body_w))
            exact = (math.ceil(doc.size().height()), self._exact_footer(row, body_w))
            self._heights[row.id] = ((row.text, row.streaming, row.footer), body_w, *exact)
            self._sizes.pop(row.id, None)
            if before != exact:  # once per text and width: the next sizeHint returns the exact height
                self.sizeHintChanged.emit(index)
        layout = self.layout(rect, row)
        pal = self._view.palette()
        font, bold = self._fonts()
        painter.save()
        # No antialiasing for the bubble: an antialiased fill of the whole bubble cost 0.4 ms a message,
        # every repaint while a reply streams (most of a repaint), for corners of radius 6 that look the
        # same at 1:1 (text keeps its own antialiasing).
        base = pal.color(pal.ColorRole.Base)
        tint = _TINTS.get(row.role, _TINTS["assistant"])
        background = QColor(
            (base.red() * 9 + tint.red()) // 10,
            (base.green() * 9 + tint.green()) // 10,
            (base.blue() * 9 + tint.blue()) // 10,
        )
        painter.setPen(pal.color(pal.ColorRole.Mid))
        painter.setBrush(background)
        painter.drawRoundedRect(QRectF(layout.bubble).adjusted(0.5, 0.5, -0.5, -0.5), 6, 6)

        text_color = pal.color(pal.ColorRole.Text)
        muted = theme.muted_text(pal)
        painter.setFont(bold)
        painter.setPen(text_color)
        center = Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft
        painter.drawText(layout.role, int(center), "You" if row.role == "user" else "Assistant")
        if layout.version_text is not None:
            painter.setPen(muted)
            painter.drawText(
                layout.version_text, int(Qt.AlignmentFlag.AlignCenter), f"{row.version[0]}/{row.version[1]}"
            )
        link = pal.color(pal.ColorRole.Link)
        for name, area in layout.hits.items():
            hovered = self.hovered == (row.id, name)
            enabled = not (
                (name == "previous_version" and row.version[0] <= 1)
                or (name == "next_version" and row.version[0] >= row.version[1])
            )
            f = QFont(bold if name.endswith("_version") else font)
            f.setUnderline(hovered and enabled)
            painter.setFont(f)
            painter.setPen(link if hovered and enabled else (text_color if enabled else muted))
            painter.drawText(area, int(Qt.AlignmentFlag.AlignCenter), action_label(row, name))
        if layout.dropped is not None:
            italic = QFont(font)
            italic.setItalic(True)
            painter.setFont(italic)
            painter.setPen(theme.warning_color(pal))
            painter.drawText(layout.dropped, int(center), "out of context")

        painter.translate(layout.body.topLeft())
        context = QAbstractTextDocumentLayout.PaintContext()
        context.palette.setColor(context.palette.ColorRole.Text, muted if row.dropped else text_color)
        context.clip = QRectF(0, 0, layout.body.width(), layout.body.height())
        doc.documentLayout().draw(painter, context)
        painter.translate(-layout.body.topLeft())

        if row.footer:
            painter.setFont(font)
            painter.setPen(theme.error_color(pal) if row.interrupted else muted)
            painter.drawText(layout.footer, int(Qt.TextFlag.TextWordWrap), row.footer)
        painter.restore()

    def measure_tail(self, rows: list[MessageRow], height: int) -> None:
        """Lay out exactly the last rows that fill ``height`` (what a view opened at its end shows first),
        so the first paint needs no second layout pass."""
        body_w = self._body_width(self.width)
        filled = 0
        for row in reversed(rows):
            if filled > height:
                break
            if self._known(row, body_w) is None:
                doc = self.document(row, body_w)
                exact = (math.ceil(doc.size().height()), self._exact_footer(row, body_w))
                self._heights[row.id] = ((row.text, row.streaming, row.footer), body_w, *exact)
                self._sizes.pop(row.id, None)
            known = self._known(row, body_w)
            filled += (known[0] + known[1]) if known else 0

    def laid_out(self) -> list[str]:
        """Ids of the messages whose text is laid out now (what was painted recently)."""
        return list(self._docs)

    def forget(self) -> None:
        """Drop cached layouts (a new conversation: ids of the old one are gone)."""
        self._docs.clear()
        self._heights.clear()
        self._sizes.clear()
