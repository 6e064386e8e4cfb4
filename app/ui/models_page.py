"""The Models page: find a model (search) or open a repo, see every branch with size, memory and fit,
pick one, download it.

The box at the top is search-or-open: an exact ``org/name``, ``org/name:branch`` or a Hub URL opens
the repo; anything else searches the Hub (debounced while typing) and the results list
(:class:`~app.ui.models.search_panel.SearchPanel`) takes the page until a result is opened; "Back"
returns to it.

The catalog is fetched in a worker: the cached table (if any) appears at once, then the refresh
replaces it. Context length, cache type and planned GPUs re-evaluate the cached facts on the GUI
thread (pure computation, no network).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QByteArray, QItemSelection, QModelIndex, QSortFilterProxyModel, Qt, Signal
from PySide6.QtGui import QFont, QFontMetrics
from PySide6.QtWidgets import (
    QAbstractItemDelegate,
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QSplitter,
    QStackedWidget,
    QTableView,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.catalog.fit import FitStatus
from app.catalog.measured import MeasuredPeak
from app.catalog.repo_ref import RepoRef, parse_repo_ref
from app.catalog.search_query import opens_a_repo
from app.catalog.table import BranchRow
from app.catalog.vram import CacheType
from app.errors import QuantDeskError
from app.hardware import Hardware, planned_hardware
from app.ui import theme
from app.ui.details_pane import DetailsPane
from app.ui.error_center import ErrorCenter
from app.ui.models.base_models import BaseModels
from app.ui.models.branch_delegates import BadgeDelegate, ButtonDelegate
from app.ui.models.branch_model import SORT_ROLE, BranchTableModel, LocalInfo
from app.ui.models.placeholder import Placeholder
from app.ui.models.search_panel import SearchPanel
from app.ui.settings import SUGGESTED_REPOS, UiSettings
from app.ui.workers import Worker, start_worker
from app.units import GIB, format_size

if TYPE_CHECKING:
    from app.catalog.service import RepoCatalog

CACHE_LABELS = {
    CacheType.FP16: "FP16 (all backends)",
    CacheType.FP8: "FP8 (ExLlamaV2)",
    CacheType.Q8: "Q8 (ExLlamaV2)",
    CacheType.Q6: "Q6 (ExLlamaV2)",
    CacheType.Q4: "Q4 (ExLlamaV2)",
}
MAX_CONTEXT = 1 << 20


def load_catalog(ref: RepoRef) -> Generator[Any, None, Any]:
    """Worker body: yield the cached table (if any), then return the refreshed one.

    Imported here, on the worker thread: the Hub client pulls in huggingface_hub, which the GUI
    thread never needs to load.
    """
    from app.catalog.service import Catalog

    catalog = Catalog()
    cached = catalog.cached(ref)
    if cached is not None:
        yield cached
    return catalog.fetch(ref)


def read_measurements(repo_id: str) -> list[MeasuredPeak]:
    """Worker body: the user's measurements of one repo (a damaged file is set aside, then empty)."""
    from app.catalog.measured import MeasuredStore

    return MeasuredStore().for_repo(repo_id)


def hardware_summary(hw: Hardware) -> str:
    """One line: what the table plans for (planned or detected GPUs and their free memory, or the CPU)."""
    if hw.gpus:
        parts = [f"GPU {g.index} {g.name}: {format_size(g.free_bytes)} free" for g in hw.gpus]
        what = "the GPUs you entered" if hw.planned else "this machine"
        return f"Planning for {what}: " + " · ".join(parts)
    note = hw.gpu_note or "No CUDA GPU."
    return f"{note} Planning for the CPU: {format_size(hw.ram_available_bytes)} RAM free."


def hardware_short(hw: Hardware) -> str:
    """A few words for the planning row: 'CPU only · 21.5 GiB RAM free', '2 GPUs · 23.6 + 23.6 GiB free'."""
    if not hw.gpus:
        return f"CPU only · {format_size(hw.ram_available_bytes)} RAM free"
    free = " + ".join(f"{g.free_bytes / GIB:.1f}" for g in hw.gpus)
    count = len(hw.gpus)
    return f"{'Planned: ' if hw.planned else ''}{count} GPU{'s' if count != 1 else ''} · {free} GiB free"


def parse_gpu_plan(text: str) -> list[float] | None:
    """'24,24' -> [24.0, 24.0]; '' -> None (this machine); raises ValueError for anything else."""
    parts = [p.strip() for p in text.replace(";", ",").replace("GiB", "").split(",") if p.strip()]
    if not parts:
        return None
    sizes = [float(p) for p in parts]
    if any(s <= 0 or s > 4096 for s in sizes):
        raise ValueError("sizes must be positive GiB")
    return sizes


class ModelsPage(QWidget):
    """Repo box, planning controls, the branch table and the details pane."""

    download_requested = Signal(str, str)  # repo_id, branch
    planning_described = Signal(str)  # what the table plans for, for the window's status bar
    catalog_shown = Signal(object)  # RepoCatalog, after it is in the table (cached or fresh)
    loading_finished = Signal()

    def __init__(self, settings: UiSettings, errors: ErrorCenter, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.settings = settings
        self.errors = errors
        # Asked before a "Doesn't fit" branch is downloaded (tests replace it).
        self.confirm_unfit_download: Callable[[QWidget, BranchRow], bool] = confirm_unfit_download
        self.catalog: RepoCatalog | None = None
        self._detected: Hardware | None = None
        self._generation = 0
        self._worker: Worker[Any] | None = None
        self._loading_ref: RepoRef | None = None
        self._shown_ref: RepoRef | None = None  # the repo (and branch) the table shows
        self._selected_branch: str | None = None
        self._pending_splitter: QByteArray | None = None
        self.base_models = BaseModels(self)
        self.base_models.known.connect(self._show_versions_button)
        self._build()
        self._fill_history()

    # -- layout ---------------------------------------------------------------------------------------

    def _build(self) -> None:
        layout = QVBoxLayout(self)
        layout.setContentsMargins(12, 10, 12, 6)
        layout.setSpacing(8)

        top = QHBoxLayout()
        self.repo_box = QComboBox()
        self.repo_box.setEditable(True)
        self.repo_box.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        self.repo_box.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.repo_box.setMinimumContentsLength(36)
        line = self.repo_box.lineEdit()
        assert line is not None
        line.setPlaceholderText("Search models (e.g. llama 70b gptq) or open org/name[:branch] or a URL")
        line.setClearButtonEnabled(True)
        line.returnPressed.connect(self._open_typed)
        line.textEdited.connect(self._text_edited)
        self.repo_box.activated.connect(lambda _i: self._open_typed())
        self.open_button = QPushButton("Search / Open")
        self.open_button.setDefault(True)
        self.open_button.clicked.connect(self._open_typed)
        self.refresh_button = QToolButton()
        self.refresh_button.setText("Refresh")
        self.refresh_button.setToolTip("Fetch the repo again from the Hub")
        self.refresh_button.clicked.connect(self.refresh)
        self.refresh_button.setEnabled(False)
        top.addWidget(QLabel("Model"))
        top.addWidget(self.repo_box, 1)
        top.addWidget(self.open_button)
        top.addWidget(self.refresh_button)
        layout.addLayout(top)

        planning = QHBoxLayout()
        planning.setSpacing(6)
        self.context_box = QSpinBox()
        self.context_box.setRange(0, MAX_CONTEXT)
        self.context_box.setSingleStep(1024)
        self.context_box.setSpecialValueText("model's maximum")
        self.context_box.setSuffix(" tokens")
        self.context_box.setAccelerated(True)
        self.context_box.setToolTip("Context length to plan memory for (0: each model's own maximum)")
        self.context_box.setValue(min(self.settings.default_context, MAX_CONTEXT))
        self.context_box.valueChanged.connect(self._planning_changed)
        self.prompt_box = QSpinBox()
        self.prompt_box.setRange(0, MAX_CONTEXT)
        self.prompt_box.setSingleStep(512)
        self.prompt_box.setSpecialValueText("¼ of context")
        self.prompt_box.setSuffix(" tokens")
        self.prompt_box.setAccelerated(True)
        self.prompt_box.setToolTip(
            "Longest prompt to plan for: processing it needs memory on top of the KV cache "
            "(0: a quarter of the context, at least 512 tokens)"
        )
        self.prompt_box.valueChanged.connect(self._planning_changed)
        self.cache_box = QComboBox()
        for cache, label in CACHE_LABELS.items():
            self.cache_box.addItem(label, cache.value)
        self.cache_box.setToolTip("KV cache type; quantized caches are an ExLlamaV2 feature")
        self.cache_box.setCurrentIndex(max(0, self.cache_box.findData(self.settings.cache_type.value)))
        self.cache_box.currentIndexChanged.connect(self._planning_changed)
        self.plan_box = QLineEdit()
        self.plan_box.setPlaceholderText("this machine")
        self.plan_box.setToolTip(
            "Plan for other GPUs: free GiB per GPU, e.g. 24 or 24,24. Empty: this machine."
        )
        self.plan_box.setMaximumWidth(140)
        self.plan_box.editingFinished.connect(self._plan_changed)
        self.hardware_label = QLabel("Detecting GPUs…")
        self.hardware_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.hardware_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        planning.addWidget(QLabel("Context"))
        planning.addWidget(self.context_box)
        planning.addWidget(QLabel("Longest prompt"))
        planning.addWidget(self.prompt_box)
        planning.addSpacing(10)
        planning.addWidget(QLabel("KV cache"))
        planning.addWidget(self.cache_box)
        planning.addSpacing(10)
        planning.addWidget(QLabel("GPUs (GiB)"))
        planning.addWidget(self.plan_box)
        planning.addSpacing(10)
        planning.addWidget(self.hardware_label, 1)
        layout.addLayout(planning)

        status = QHBoxLayout()
        self.back_button = QToolButton()
        self.back_button.setText("← Results")
        self.back_button.setToolTip("Back to the search results")
        self.back_button.clicked.connect(self.show_results)
        self.back_button.hide()
        self.versions_button = QToolButton()
        self.versions_button.setText("Quantized versions")
        self.versions_button.clicked.connect(self._versions_of_shown)
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
        layout.addLayout(status)

        self.model = BranchTableModel(self)
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.model)
        self.proxy.setSortRole(SORT_ROLE)
        self.table = QTableView()
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(-1, Qt.SortOrder.AscendingOrder)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setAlternatingRowColors(True)
        self.table.setWordWrap(False)
        self.table.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.table.verticalHeader().hide()
        self.table.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 14)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.horizontalHeader().setHighlightSections(False)
        self.table.setMouseTracking(True)
        self.badges = BadgeDelegate(self.table)
        self.buttons = ButtonDelegate(self.table)
        self.buttons.clicked.connect(self._download_clicked)
        self.model.modelReset.connect(self._columns_changed)
        self.model.dataChanged.connect(self._cells_changed)
        selection = self.table.selectionModel()
        selection.selectionChanged.connect(self._selection_changed)

        self.placeholder = Placeholder()
        self.placeholder.open_requested.connect(self.open_repo)
        self.placeholder.search_requested.connect(self.search)
        # The page rewrites these while a repo opens or fails (and tests read them).
        self.placeholder_title = self.placeholder.title
        self.placeholder_text = self.placeholder.text
        self.suggestions = self.placeholder.suggestions
        self.suggestion_buttons = self.placeholder.suggestion_buttons
        self.stack = QStackedWidget()
        self.stack.addWidget(self.placeholder)
        self.stack.addWidget(self.table)
        self.search_panel = SearchPanel(self.errors)
        self.search_panel.open_requested.connect(self._open_result)
        self.search_panel.search_started.connect(self._search_started)
        self.stack.addWidget(self.search_panel)

        self.details = DetailsPane()
        self.splitter = QSplitter(Qt.Orientation.Vertical)
        self.splitter.setObjectName("modelsSplitter")
        self.splitter.addWidget(self.stack)
        self.splitter.addWidget(self.details)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 2)
        self.splitter.setChildrenCollapsible(False)
        layout.addWidget(self.splitter, 1)
        self.details.hide()
        self._columns_changed()

    def _show_placeholder(self) -> None:
        self.stack.setCurrentWidget(self.placeholder)
        self.details.hide()  # nothing to detail: the placeholder gets the whole page

    def _fill_history(self) -> None:
        history = self.settings.repo_history
        current = self.repo_box.currentText()
        self.repo_box.blockSignals(True)
        self.repo_box.clear()
        self.repo_box.addItems(history or list(SUGGESTED_REPOS))
        self.repo_box.setEditText(current)
        self.repo_box.blockSignals(False)

    # -- public API -----------------------------------------------------------------------------------

    def set_hardware(self, hardware: Hardware) -> None:
        """The detected hardware (arrives from a worker shortly after start-up)."""
        self._detected = hardware
        self._plan_changed()

    def set_local(self, local: dict[str, LocalInfo]) -> None:
        """Per branch of the shown repo: what is on this machine or downloading."""
        self.model.set_local(local)

    def open_last_repo(self) -> None:
        """Open the most recent repo, if any (at start-up: cached table at once, then a refresh)."""
        history = self.settings.repo_history
        if history:
            self.open_repo(history[0])

    def open_repo(self, text: str) -> bool:
        """Open a repo as typed; False (and a message in the banner, once) when the text is not a repo."""
        try:
            ref = parse_repo_ref(text)
        except QuantDeskError as exc:
            self.errors.report(exc, "opening a repo")
            return False
        self.repo_box.setEditText(str(ref))
        if ref == self._loading_ref:
            return True  # already on its way (Enter and the combo's activation both ask)
        self.back_button.setVisible(self.search_panel.query is not None)
        self._start_loading(ref)
        return True

    def search(self, text: str) -> None:
        """Search the Hub for ``text`` and show the results."""
        self.repo_box.setEditText(text)
        self.search_panel.search(text)

    def show_quantized_versions(self, base_model: str) -> None:
        """List the quantized uploads of ``base_model`` (GPTQ first)."""
        self.search_panel.show_quantized_versions(base_model)

    def show_results(self) -> None:
        """Show the search results (Back from a repo opened from them)."""
        if self._worker is not None:
            self._worker.quit()
            self._generation += 1  # a repo still loading no longer takes the page
            self._finished(self._generation)
        self.stack.setCurrentWidget(self.search_panel)
        self.details.hide()
        self.back_button.hide()
        self.versions_button.hide()
        self.repo_title.setText("")
        self._set_status("")

    def refresh(self) -> None:
        """Fetch the shown repo again."""
        if self._loading_ref is None and self._shown_ref is not None:
            self._start_loading(self._shown_ref)

    @property
    def is_loading(self) -> bool:
        """Whether a catalog fetch is under way."""
        return self._loading_ref is not None

    def select_branch(self, branch: str) -> bool:
        """Select a branch's row (tests and hand-overs)."""
        row = self.model.row_of(branch)
        if row < 0:
            return False
        index = self.proxy.mapFromSource(self.model.index(row, 0))
        self.table.selectRow(index.row())
        self.table.scrollTo(index)
        return True

    def selected_row(self) -> BranchRow | None:
        """The row shown in the details pane."""
        if self._selected_branch is None:
            return None
        row = self.model.row_of(self._selected_branch)
        return self.model.rows[row] if row >= 0 else None

    def save_state(self) -> None:
        """Persist splitter and column widths."""
        if not self.details.isHidden():  # a hidden pane would be saved with no room
            self.settings.set_bytes_value("models/splitter", self.splitter.saveState())
        if self.model.columnCount():
            self.settings.set_bytes_value("models/header", self.table.horizontalHeader().saveState())

    def restore_state(self) -> None:
        """Restore splitter sizes."""
        state = self.settings.bytes_value("models/splitter")
        if state is not None:
            self.splitter.restoreState(state)
            self._pending_splitter = state  # again once the details pane shows: hidden, it may get 0
        else:
            self.splitter.setSizes([330, 370])

    # -- loading --------------------------------------------------------------------------------------

    def _open_typed(self) -> None:
        text = self.repo_box.currentText().strip()
        if not text:
            return
        if opens_a_repo(text):
            self.open_repo(text)
        else:
            self.search(text)

    def _text_edited(self, text: str) -> None:
        if opens_a_repo(text):
            self.search_panel.schedule_search("")  # a repo id opens on Enter: drop a pending search
            return
        self.search_panel.schedule_search(text)  # the page turns to the results when it starts

    def _search_started(self) -> None:
        query = self.search_panel.query
        if query is not None and query.base_model:
            self.repo_box.setEditText("")  # the words of an earlier search no longer describe the list
        self.show_results()

    def _open_result(self, repo_id: str) -> None:
        self.base_models.remember(self.search_panel.model.hits[self.search_panel.model.row_of(repo_id)])
        self.open_repo(repo_id)

    def _versions_of_shown(self) -> None:
        base = self.base_models.get(self.catalog.repo_id) if self.catalog is not None else None
        if base:
            self.show_quantized_versions(base)

    def _show_versions_button(self, repo_id: str) -> None:
        if (
            self.catalog is None
            or self.catalog.repo_id != repo_id
            or self.stack.currentWidget() is not self.table
        ):
            return
        base = self.base_models.get(repo_id)
        self.versions_button.setVisible(base is not None)
        self.versions_button.setToolTip(f"List the quantized uploads of {base}" if base else "")

    def _start_loading(self, ref: RepoRef) -> None:
        if self._worker is not None:
            self._worker.quit()
        self._generation += 1
        generation = self._generation
        self._loading_ref = ref
        if self.catalog is None or self.catalog.repo_id != ref.repo_id:
            self.catalog = None
            self.model.set_branches(ref.repo_id, ())
            self.repo_title.setText(str(ref))
            self.placeholder_title.setText(f"Opening {ref}…")
            self.placeholder_text.setText("Reading its branches from the Hub.")
            self.suggestions.hide()
            self._show_placeholder()
        self.busy.show()
        self.refresh_button.setEnabled(False)
        self._set_status("Refreshing from the Hub…")
        self._worker = start_worker(
            load_catalog,
            ref,
            connect={
                "yielded": lambda cat: self._loaded(generation, cat, final=False),
                "returned": lambda cat: self._loaded(generation, cat, final=True),
                "errored": lambda exc: self._failed(generation, ref, exc),
                "finished": lambda: self._finished(generation),
            },
        )

    def _loaded(self, generation: int, catalog: RepoCatalog, final: bool) -> None:
        if generation != self._generation:
            return
        self.catalog = catalog
        self._shown_ref = self._loading_ref
        self.repo_title.setText(catalog.repo_id)
        self.stack.setCurrentWidget(self.table)
        self.details.show()
        if self._pending_splitter is not None:
            self.splitter.restoreState(self._pending_splitter)
            self._pending_splitter = None
        self.model.set_branches(catalog.repo_id, catalog.branches)  # the reset re-selects the row
        start_worker(read_measurements, catalog.repo_id, connect={"returned": self.model.set_measurements})
        if self._loading_ref is not None and str(self._loading_ref) not in self.settings.repo_history[:1]:
            self.settings.remember_repo(str(self._loading_ref))  # only repos that opened join the list
            self._fill_history()
        self._show_versions_button(catalog.repo_id)
        if final and catalog.access_note:
            self._set_status(f"🔒 {catalog.access_note}", stale=True)
        elif final and not catalog.stale:
            count = len(catalog.branches)
            self._set_status(
                f"{count} branch{'es' if count != 1 else ''} · updated {_clock(catalog.fetched_at)}"
            )
        elif final:
            self._set_status(
                f"⚠ Offline: showing the table cached {_clock(catalog.fetched_at)}. {catalog.stale_reason}",
                stale=True,
            )
        else:
            self._set_status(f"Cached {_clock(catalog.fetched_at)} · refreshing from the Hub…")
        self.catalog_shown.emit(catalog)

    def _failed(self, generation: int, ref: RepoRef, exc: BaseException) -> None:
        if generation != self._generation:
            return
        report = self.errors.report(exc, f"opening {ref}")
        if self.catalog is not None and self.catalog.repo_id == ref.repo_id:
            self._set_status(f"⚠ Could not refresh: {report.message}", stale=True)
            return
        self.repo_title.setText(str(ref))
        self.placeholder_title.setText(f"Could not open {ref}")
        self.placeholder_text.setText(
            "The message above says why. Check the repo id (org/name), or add a Hugging Face token in "
            "Settings for gated and private repos."
        )
        self.placeholder_text.setToolTip(report.message)
        self.suggestions.setVisible(not self.settings.repo_history)
        self._show_placeholder()
        self._set_status("")

    def _finished(self, generation: int) -> None:
        if generation != self._generation:
            return
        self._worker = None
        self._loading_ref = None
        self.busy.hide()
        self.refresh_button.setEnabled(self.catalog is not None)
        self.loading_finished.emit()

    def _set_status(self, text: str, stale: bool = False, error: bool = False) -> None:
        color = theme.error_color() if error else theme.warning_color() if stale else theme.muted_text()
        self.status_label.setStyleSheet(f"color: {color.name()};")
        self.status_label.setText(text)
        self.status_label.setToolTip(text)
        self.status_label.setProperty("stale", stale)

    # -- planning -------------------------------------------------------------------------------------

    def _planning_changed(self) -> None:
        context = self.context_box.value() or None
        cache = CacheType(self.cache_box.currentData())
        self.settings.cache_type = cache
        self.model.set_planning(context, cache, self.prompt_box.value() or None)
        self.search_panel.set_planning(context, cache, self.model.hardware)

    def _plan_changed(self) -> None:
        if self._detected is None:
            return
        try:
            sizes = parse_gpu_plan(self.plan_box.text())
        except ValueError:
            self.plan_box.setStyleSheet(f"border: 1px solid {theme.error_color().name()};")
            self.plan_box.setToolTip("Give free GiB per GPU, e.g. 24 or 24,24 (empty: this machine).")
            return
        self.plan_box.setStyleSheet("")
        hardware = planned_hardware(self._detected, sizes) if sizes else self._detected
        self.hardware_label.setText(hardware_short(hardware))
        self.hardware_label.setToolTip(hardware_summary(hardware))
        self.planning_described.emit(hardware_summary(hardware))
        self.model.set_planning(
            self.context_box.value() or None,
            CacheType(self.cache_box.currentData()),
            self.prompt_box.value() or None,
        )
        self.model.set_hardware(hardware)
        self.search_panel.set_planning(
            self.context_box.value() or None, CacheType(self.cache_box.currentData()), hardware
        )
        self._show_details()

    # -- table ----------------------------------------------------------------------------------------

    def _columns_changed(self) -> None:
        for i, column in enumerate(self.model.columns):
            delegate: QAbstractItemDelegate = self.table.itemDelegate()
            if column.key == "fit" or column.gpu >= 0:
                delegate = self.badges
            elif column.key == "download":
                delegate = self.buttons
            self.table.setItemDelegateForColumn(i, delegate)
        if self.model.rowCount():
            self._fit_columns()
        self._reselect()

    def _fit_columns(self) -> None:
        """Column widths from the cell texts (what resizeColumnsToContents does, at a tenth of the cost:
        it asks each cell's delegate for a size hint, a dozen Python calls per cell)."""
        header = self.table.horizontalHeader()
        plain = self.table.fontMetrics()
        bold_font = QFont(self.table.font())
        bold_font.setBold(True)
        bold = QFontMetrics(bold_font)
        caps = {"dataset": 110, "branch": 240, "description": 120}
        model = self.model
        for i, column in enumerate(model.columns):
            texts = [str(model.index(r, i).data() or "") for r in range(model.rowCount())]
            if column.key == "fit":  # any verdict may appear later without a reset (a planning change)
                texts += list(theme.FIT_LABELS.values())
            metrics = bold if column.key == "fit" or column.gpu >= 0 else plain
            padding = 34 if column.key in ("fit", "download") or column.gpu >= 0 else 12
            width = max(
                [plain.horizontalAdvance(column.title) + 22]
                + [metrics.horizontalAdvance(t) + padding for t in texts]
            )
            header.resizeSection(i, min(width, caps.get(column.key, width)))
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setStretchLastSection(True)

    def _reselect(self) -> None:
        if not self.model.rowCount():
            self._show_details()
            return
        branch = self._selected_branch
        if branch is None or self.model.row_of(branch) < 0:
            branch = self.model.rows[0].info.branch
        self.select_branch(branch)

    def _selection_changed(self, selected: QItemSelection, _deselected: QItemSelection) -> None:
        indexes = self.table.selectionModel().selectedRows()
        if indexes:
            source = self.proxy.mapToSource(indexes[0])
            self._selected_branch = self.model.rows[source.row()].info.branch
        self._show_details()

    def _cells_changed(self, top_left: QModelIndex, bottom_right: QModelIndex) -> None:
        download = self.model.column_index("download")
        if top_left.column() == bottom_right.column() == download:
            return  # only the download state moved: the details pane does not show it
        self._show_details()

    def _show_details(self) -> None:
        self.details.show_row(self.selected_row(), self.model.hardware)

    def _download_clicked(self, branch: str) -> None:
        if self.catalog is None:
            return
        row_index = self.model.row_of(branch)
        row = self.model.rows[row_index] if row_index >= 0 else None
        unfit = row is not None and row.fit.status is FitStatus.NO_FIT
        if unfit and row is not None and not self.confirm_unfit_download(self, row):
            return
        self.download_requested.emit(self.catalog.repo_id, branch)


def confirm_unfit_download(parent: QWidget, row: BranchRow) -> bool:
    """Ask before downloading a branch marked "Doesn't fit" (No is the default)."""
    answer = QMessageBox.warning(
        parent,
        "Download a branch that doesn't fit?",
        f"{row.info.branch} ({format_size(row.info.size_bytes)}) doesn't fit this machine: "
        f"{row.fit.message}\n\nDownload it anyway (e.g. to run it elsewhere)?",
        QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
        QMessageBox.StandardButton.No,
    )
    return answer == QMessageBox.StandardButton.Yes


def _clock(timestamp: float) -> str:
    age = time.time() - timestamp
    if age < 90:
        return "just now"
    if age < 3600:
        return f"{age / 60:.0f} min ago"
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(timestamp))
