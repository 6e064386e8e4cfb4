"""The search panel of the Models page: results of a Hub search, paged in as the user scrolls.

It owns the query (words or a base model), the "GPTQ only" switch, the sort selector and the results
view. Every Hub call runs in a worker: the first page of a search, further pages when the view asks
for more, and the fit of each *visible* GPTQ result (:class:`~app.ui.models.fit_glances.FitGlances`
reads a few repos at a time and keeps their catalogs, so a planning change re-judges them without the
network). A newer search makes older answers void (a generation number); a debounce keeps typing
from flooding the Hub.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from PySide6.QtCore import QModelIndex, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from app.catalog.search_query import SORT_LABELS, SearchCursor, SearchPage, SearchQuery, SortKey
from app.catalog.vram import CacheType
from app.hardware import Hardware
from app.ui import theme
from app.ui.column_widths import ColumnWidths
from app.ui.error_center import ErrorCenter
from app.ui.models.branch_delegates import BadgeDelegate
from app.ui.models.fit_glances import FitGlances, Verdict
from app.ui.models.search_results import COLUMN_INDEX, COLUMNS, SearchResultsModel
from app.ui.workers import Worker, start_worker, while_alive

DEBOUNCE_MS = 350
MIN_SEARCH_CHARS = 2
_COLUMN_WIDTHS = {"repo": 330, "downloads": 80, "likes": 60, "updated": 90, "size": 100, "tags": 120,
                  "fit": 100, "need": 80, "base": 200}  # fmt: skip


def first_page_job(query: SearchQuery) -> SearchPage:
    """Worker body: the first page (huggingface_hub is imported here, never on the GUI thread)."""
    from app.auth import read_token
    from app.catalog.search import HubSearch

    return HubSearch(token=read_token()).first_page(query)


def next_page_job(query: SearchQuery, cursor: SearchCursor) -> SearchPage:
    """Worker body: the page at ``cursor``."""
    from app.auth import read_token
    from app.catalog.search import HubSearch

    return HubSearch(token=read_token()).page(query, cursor)


class SearchPanel(QWidget):
    """Header (title, GPTQ switch, sort, quantized versions), status line and the results view."""

    open_requested = Signal(str)  # a result's repo id (Enter or double-click)
    search_started = Signal()  # a new query went out (the page turns to the results)
    results_shown = Signal()  # the first page of a search is in the view (or the search failed)
    page_appended = Signal()
    fit_shown = Signal(str)  # repo id whose fit cell was filled

    def __init__(self, errors: ErrorCenter, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.errors = errors
        self.query: SearchQuery | None = None
        self._cursor: SearchCursor | None = None
        self._generation = 0
        self._search_worker: Worker[Any] | None = None
        self._pending_text = ""
        self.glances = FitGlances(self)
        self.glances.judged.connect(self._judged)
        self._debounce = QTimer(self, singleShot=True, interval=DEBOUNCE_MS)
        self._debounce.timeout.connect(lambda: self.search(self._pending_text))
        self._visible_timer = QTimer(self, singleShot=True, interval=30)  # coalesces scroll steps
        self._visible_timer.timeout.connect(self._request_visible_fits)
        self._build()

    def _build(self) -> None:
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(6)
        header = QHBoxLayout()
        self.title = QLabel()
        font = self.title.font()
        font.setPointSizeF(font.pointSizeF() * 1.2)
        font.setBold(True)
        self.title.setFont(font)
        self.title.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.gptq_switch = QCheckBox("GPTQ only")
        self.gptq_switch.setChecked(True)
        self.gptq_switch.setToolTip("Only GPTQ uploads (the Hub's gptq tag, or GPTQ in the words you typed)")
        self.gptq_switch.toggled.connect(lambda on: self._requery(gptq_only=on))
        self.sort_box = QComboBox()
        for key, label in SORT_LABELS.items():
            self.sort_box.addItem(label, key.value)
        self.sort_box.setToolTip("Order of the results (the Hub sorts, highest first)")
        self.sort_box.currentIndexChanged.connect(
            lambda _i: self._requery(sort=SortKey(self.sort_box.currentData()))
        )
        self.versions_button = QPushButton("Quantized versions")
        self.versions_button.setToolTip("List the quantized uploads of the selected model's base model")
        self.versions_button.clicked.connect(self._versions_of_selected)
        self.versions_button.setEnabled(False)
        self.busy = QProgressBar()
        self.busy.setRange(0, 0)
        self.busy.setMaximumWidth(90)
        self.busy.setMaximumHeight(10)
        self.busy.setTextVisible(False)
        self.busy.hide()
        header.addWidget(self.title, 1)
        header.addWidget(self.busy)
        header.addWidget(self.gptq_switch)
        header.addWidget(QLabel("Sort"))
        header.addWidget(self.sort_box)
        header.addWidget(self.versions_button)
        layout.addLayout(header)

        self.status_label = QLabel()
        self.status_label.setWordWrap(True)
        self.status_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        layout.addWidget(self.status_label)

        self.model = SearchResultsModel(self)
        self.model.more_wanted.connect(self._load_more)
        self.model.rowsInserted.connect(lambda *_: self._visible_timer.start())
        self.model.modelReset.connect(lambda: self._visible_timer.start())
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setAlternatingRowColors(True)
        self.table.setWordWrap(False)
        self.table.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.table.verticalHeader().hide()
        self.table.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 12)
        header_view = self.table.horizontalHeader()
        header_view.setHighlightSections(False)
        header_view.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header_view.setStretchLastSection(True)
        self.column_widths = ColumnWidths(header_view, lambda: [column.key for column in COLUMNS])
        with self.column_widths.sizing():
            for i, column in enumerate(COLUMNS):
                header_view.resizeSection(i, _COLUMN_WIDTHS.get(column.key, 100))
        self.table.setItemDelegateForColumn(COLUMN_INDEX["fit"], BadgeDelegate(self.table))
        self.table.activated.connect(self._activated)
        self.table.verticalScrollBar().valueChanged.connect(lambda _v: self._visible_timer.start())
        self.table.selectionModel().selectionChanged.connect(lambda *_: self._selection_changed())
        layout.addWidget(self.table, 1)

    # -- public API -----------------------------------------------------------------------------------

    def schedule_search(self, text: str) -> None:
        """Search for ``text`` once the user pauses typing (shorter texts cancel a pending search)."""
        self._pending_text = text
        if len(text.strip()) >= MIN_SEARCH_CHARS:
            self._debounce.start()
        else:
            self._debounce.stop()

    def search(self, text: str) -> None:
        """Search now for ``text`` with the current switch and sort."""
        self._debounce.stop()
        self._start(SearchQuery(text=" ".join(text.split()), sort=self._sort(), gptq_only=self._gptq_only()))

    def show_quantized_versions(self, base_model: str) -> None:
        """List the repos quantized from ``base_model`` (GPTQ first; every format unless GPTQ only)."""
        self._debounce.stop()
        self._start(SearchQuery(base_model=base_model, sort=self._sort(), gptq_only=self._gptq_only()))

    def set_planning(self, context: int | None, cache: CacheType, hardware: Hardware | None) -> None:
        """What fit verdicts are judged against; re-judges every catalog already read (no network)."""
        self.model.clear_fits()
        self.glances.set_planning(context, cache, hardware)
        self._visible_timer.start()

    @property
    def is_searching(self) -> bool:
        """Whether a first page is on its way."""
        return self._search_worker is not None

    @property
    def fits_in_flight(self) -> int:
        """How many repos are being read for their fit right now."""
        return self.glances.in_flight

    # -- searching ------------------------------------------------------------------------------------

    def _sort(self) -> SortKey:
        return SortKey(self.sort_box.currentData())

    def _gptq_only(self) -> bool:
        return self.gptq_switch.isChecked()

    def _requery(self, **changes: Any) -> None:
        if self.query is not None:
            self._start(replace(self.query, **changes))

    def _start(self, query: SearchQuery) -> None:
        if query == self.query and self._search_worker is not None:
            return  # already on its way (Enter and the combo's activation both ask)
        self._generation += 1
        generation = self._generation
        if self._search_worker is not None:
            self._search_worker.quit()  # its answer is void: the generation moved on
        self.query = query
        self._cursor = None
        self.title.setText(self._title(query))
        self._set_status(f"Searching the Hub for {query.describe()}…")
        self.busy.show()
        self.model.reset()
        self.search_started.emit()
        self._search_worker = start_worker(
            first_page_job,
            query,
            connect=while_alive(
                self,
                returned=lambda page: self._first_page(generation, page),
                errored=lambda exc: self._failed(generation, exc),
                finished=lambda: self._search_finished(generation),
            ),
        )

    @staticmethod
    def _title(query: SearchQuery) -> str:
        if query.base_model:
            return f"Quantized versions of {query.base_model}"
        return f"Results for {query.describe()}"

    def _first_page(self, generation: int, page: SearchPage) -> None:
        if generation != self._generation:
            return
        self._search_finished(generation)  # answered: a repeat of the same query is a new search
        self._cursor = page.cursor
        self.model.reset(page.hits, page.cursor is not None)
        if page.stale:
            self._set_status(
                f"⚠ Offline: showing the results cached {_day_time(page.fetched_at)}. {page.stale_reason}",
                stale=True,
            )
        elif not page.hits:
            scope = " GPTQ" if page.query.gptq_only else ""
            hint = " Switch off “GPTQ only” to see every format." if page.query.gptq_only else ""
            self._set_status(f"No{scope} models found for {page.query.describe()}.{hint}")
        else:
            self._set_status(self._count_text())
        if page.hits:
            self.table.selectRow(0)
        self.results_shown.emit()

    def _failed(self, generation: int, exc: BaseException) -> None:
        if generation != self._generation:
            return
        self._search_finished(generation)
        self.errors.report(exc, "searching the Hub")  # the banner carries the sentence, once
        self._set_status("The search failed: the message above says why.", error=True)
        self.results_shown.emit()

    def _search_finished(self, generation: int) -> None:
        if generation == self._generation:
            self._search_worker = None
            self.busy.hide()

    def _load_more(self) -> None:
        if self.query is None or self._cursor is None:
            self.model.append((), False)
            return
        generation = self._generation
        self.busy.show()
        start_worker(
            next_page_job,
            self.query,
            self._cursor,
            connect=while_alive(
                self,
                returned=lambda page: self._more_loaded(generation, page),
                errored=lambda exc: self._more_failed(generation, exc),
            ),
        )

    def _more_loaded(self, generation: int, page: SearchPage) -> None:
        if generation != self._generation:
            return
        self.busy.hide()
        self._cursor = page.cursor
        self.model.append(page.hits, page.cursor is not None)
        self._set_status(self._count_text())
        self.page_appended.emit()

    def _more_failed(self, generation: int, exc: BaseException) -> None:
        if generation != self._generation:
            return
        self.busy.hide()
        self.model.append((), False)  # stop asking; a new search starts over
        self.errors.report(exc, "loading more search results")

    def _count_text(self) -> str:
        count = self.model.rowCount()
        more = " · scroll for more" if self.model.has_more else ""
        return f"{count} model{'s' if count != 1 else ''}{more} · Enter or double-click opens one"

    def _set_status(self, text: str, stale: bool = False, error: bool = False) -> None:
        color = theme.error_color() if error else theme.warning_color() if stale else theme.muted_text()
        self.status_label.setStyleSheet(f"color: {color.name()};")
        self.status_label.setText(text)
        self.status_label.setProperty("stale", stale)

    # -- rows -----------------------------------------------------------------------------------------

    def _activated(self, index: QModelIndex) -> None:
        if index.isValid():
            self.open_requested.emit(self.model.hits[index.row()].repo_id)

    def open_selected(self) -> bool:
        """Open the selected result (what Enter does); False when nothing is selected."""
        rows = self.table.selectionModel().selectedRows()
        if not rows:
            return False
        self._activated(rows[0])
        return True

    def _selected_base(self) -> str | None:
        rows = self.table.selectionModel().selectedRows()
        if not rows:
            return None
        hit = self.model.hits[rows[0].row()]
        return hit.base_model or (None if hit.is_quantized else hit.repo_id)

    def _selection_changed(self) -> None:
        base = self._selected_base()
        self.versions_button.setEnabled(base is not None)
        self.versions_button.setToolTip(
            f"List the quantized uploads of {base}" if base else "The selected model names no base model"
        )

    def _versions_of_selected(self) -> None:
        base = self._selected_base()
        if base is not None:
            self.show_quantized_versions(base)

    # -- fit at a glance ------------------------------------------------------------------------------

    def _visible_rows(self) -> range:
        if not self.model.hits:
            return range(0)
        top = max(0, self.table.rowAt(0))
        bottom = self.table.rowAt(self.table.viewport().height() - 1)
        bottom = len(self.model.hits) - 1 if bottom < 0 else bottom
        return range(top, bottom + 1)

    def _request_visible_fits(self) -> None:
        hits = [self.model.hits[row] for row in self._visible_rows()]
        self.glances.want([h.repo_id for h in hits if h.is_gptq and self.model.fit_of(h.repo_id) is None])

    def _judged(self, repo_id: str, verdict: Verdict) -> None:
        if self.model.row_of(repo_id) >= 0 and self.model.fit_of(repo_id) != verdict:
            self.model.set_fit(repo_id, verdict)
            self.fit_shown.emit(repo_id)


def _day_time(timestamp: float) -> str:
    import time

    return time.strftime("%Y-%m-%d %H:%M", time.localtime(timestamp))
