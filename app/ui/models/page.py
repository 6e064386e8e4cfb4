"""The Models page: find a model (search) or open a repo, see every branch with size, memory and fit,
pick one, download it. A thin composition of components wired through signals.

Top to bottom: the :class:`RepoBar` (search-or-open box), the :class:`PlanningBar` (context, prompt,
KV cache, planned GPUs), the :class:`RepoHeader` (back, repo title, freshness, busy bar, quantized
versions), then a stack of the :class:`Placeholder`, the :class:`BranchTableView` and the
:class:`SearchPanel`, over the :class:`DetailsPane` of the selected branch. The :class:`CatalogLoader`
fetches a repo's catalog in a worker (the cached table at once, then the refresh); planning changes
re-evaluate the cached facts on the GUI thread (pure computation, no network). A Download click goes
through the :class:`DownloadAction` (it asks first when the branch doesn't fit).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QByteArray, Qt, Signal
from PySide6.QtWidgets import QSplitter, QStackedWidget, QVBoxLayout, QWidget

from app.catalog.repo_ref import RepoRef, parse_repo_ref
from app.catalog.table import BranchRow
from app.errors import QuantDeskError
from app.hardware import Hardware
from app.ui.details_pane import DetailsPane
from app.ui.error_center import ErrorCenter
from app.ui.models.base_models import BaseModels
from app.ui.models.branch_model import BranchTableModel, LocalInfo
from app.ui.models.branch_view import BranchTableView
from app.ui.models.catalog_loader import CatalogLoader
from app.ui.models.download_action import DownloadAction
from app.ui.models.placeholder import Placeholder
from app.ui.models.planning_bar import PlanningBar, hardware_summary
from app.ui.models.repo_bar import RepoBar
from app.ui.models.repo_header import RepoHeader, catalog_status
from app.ui.models.search_panel import SearchPanel
from app.ui.settings import UiSettings

if TYPE_CHECKING:
    from app.catalog.service import RepoCatalog

SPLITTER_KEY = "models/splitter"
BRANCH_TABLE = "models/branches"  # where each table's column widths are kept
SEARCH_TABLE = "models/search"


class ModelsPage(QWidget):
    """Repo box, planning controls, the branch table (or the search results) and the details pane."""

    download_requested = Signal(str, str)  # repo_id, branch
    planning_described = Signal(str)  # what the table plans for, for the window's status bar
    catalog_shown = Signal(object)  # RepoCatalog, after it is in the table (cached or fresh)
    loading_finished = Signal()

    def __init__(self, settings: UiSettings, errors: ErrorCenter, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.settings = settings
        self.errors = errors
        self._pending_splitter: QByteArray | None = None
        self.base_models = BaseModels(self)
        self.loader = CatalogLoader(self)
        self.download_action = DownloadAction(self)
        self.model = BranchTableModel(self)
        self.repo_bar = RepoBar()
        self.planning = PlanningBar(settings)
        self.header = RepoHeader()
        self.table = BranchTableView(self.model)
        self.placeholder = Placeholder()
        self.search_panel = SearchPanel(self.errors)
        self.details = DetailsPane()
        self._build()
        self._wire()
        self._show_details()
        self.repo_bar.set_history(self.settings.repo_history)

    # -- layout and wiring ------------------------------------------------------------------------------

    def _build(self) -> None:
        layout = QVBoxLayout(self)
        layout.setContentsMargins(12, 10, 12, 6)
        layout.setSpacing(8)
        layout.addWidget(self.repo_bar)
        layout.addWidget(self.planning)
        layout.addWidget(self.header)
        self.stack = QStackedWidget()
        self.stack.addWidget(self.placeholder)
        self.stack.addWidget(self.table)
        self.stack.addWidget(self.search_panel)
        self.splitter = QSplitter(Qt.Orientation.Vertical)
        self.splitter.setObjectName("modelsSplitter")
        self.splitter.addWidget(self.stack)
        self.splitter.addWidget(self.details)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 2)
        self.splitter.setChildrenCollapsible(False)
        layout.addWidget(self.splitter, 1)
        self.details.hide()

    def _wire(self) -> None:
        self.repo_bar.open_requested.connect(self.open_repo)
        self.repo_bar.search_requested.connect(self.search)
        self.repo_bar.search_typed.connect(self.search_panel.schedule_search)
        self.repo_bar.refresh_requested.connect(self.refresh)
        self.planning.planning_changed.connect(self._planning_changed)
        self.planning.hardware_planned.connect(self._hardware_planned)
        self.header.back_requested.connect(self.show_results)
        self.header.versions_requested.connect(self._versions_of_shown)
        self.placeholder.open_requested.connect(self.open_repo)
        self.placeholder.search_requested.connect(self.search)
        self.search_panel.open_requested.connect(self._open_result)
        self.search_panel.search_started.connect(self._search_started)
        self.base_models.known.connect(self._show_versions_button)
        self.table.shown_row_changed.connect(self._show_details)
        self.table.download_clicked.connect(self._download_clicked)
        self.download_action.requested.connect(self.download_requested)
        self.loader.started.connect(self._loading_started)
        self.loader.loaded.connect(self._loaded)
        self.loader.failed.connect(self._failed)
        self.loader.measured.connect(self.model.set_measurements)
        self.loader.finished.connect(self._finished)

    # -- public API -----------------------------------------------------------------------------------

    @property
    def catalog(self) -> RepoCatalog | None:
        """The catalog the table shows (cached or fresh); None while none is."""
        return self.loader.catalog

    @property
    def is_loading(self) -> bool:
        """Whether a catalog fetch is under way."""
        return self.loader.is_loading

    def set_hardware(self, hardware: Hardware) -> None:
        """The detected hardware (arrives from a worker shortly after start-up)."""
        self.planning.set_detected(hardware)

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
        self.repo_bar.set_text(str(ref))
        if ref == self.loader.loading_ref:
            return True  # already on its way (Enter and the combo's activation both ask)
        self.header.set_back_visible(self.search_panel.query is not None)
        self.loader.load(ref)
        return True

    def search(self, text: str) -> None:
        """Search the Hub for ``text`` and show the results."""
        self.repo_bar.set_text(text)
        self.search_panel.search(text)

    def show_quantized_versions(self, base_model: str) -> None:
        """List the quantized uploads of ``base_model`` (GPTQ first)."""
        self.search_panel.show_quantized_versions(base_model)

    def show_results(self) -> None:
        """Show the search results (Back from a repo opened from them)."""
        self.loader.cancel()  # a repo still loading no longer takes the page
        self.stack.setCurrentWidget(self.search_panel)
        self.details.hide()
        self.header.set_back_visible(False)
        self.header.show_versions(None)
        self.header.set_title("")
        self.header.set_status("")

    def refresh(self) -> None:
        """Fetch the shown repo again."""
        self.loader.refresh()

    def select_branch(self, branch: str) -> bool:
        """Select a branch's row (tests and hand-overs)."""
        return self.table.select_branch(branch)

    def selected_row(self) -> BranchRow | None:
        """The row shown in the details pane."""
        return self.table.selected_row()

    def save_state(self) -> None:
        """Persist the splitter and the column widths the user set."""
        if not self.details.isHidden():  # a hidden pane would be saved with no room
            self.settings.set_bytes_value(SPLITTER_KEY, self.splitter.saveState())
        self.settings.set_column_widths(BRANCH_TABLE, self.table.column_widths.user)
        self.settings.set_column_widths(SEARCH_TABLE, self.search_panel.column_widths.user)

    def restore_state(self) -> None:
        """Restore the splitter sizes and the column widths the user set."""
        self.table.column_widths.restore(self.settings.column_widths(BRANCH_TABLE))
        self.search_panel.column_widths.restore(self.settings.column_widths(SEARCH_TABLE))
        state = self.settings.bytes_value(SPLITTER_KEY)
        if state is not None:
            self.splitter.restoreState(state)
            self._pending_splitter = state  # again once the details pane shows: hidden, it may get 0
        else:
            self.splitter.setSizes([330, 370])

    # -- search and open ------------------------------------------------------------------------------

    def _search_started(self) -> None:
        query = self.search_panel.query
        if query is not None and query.base_model:
            self.repo_bar.set_text("")  # the words of an earlier search no longer describe the list
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
        self.header.show_versions(self.base_models.get(repo_id))

    # -- loading --------------------------------------------------------------------------------------

    def _show_placeholder(self) -> None:
        self.stack.setCurrentWidget(self.placeholder)
        self.details.hide()  # nothing to detail: the placeholder gets the whole page

    def _loading_started(self, ref: RepoRef, other_repo: bool) -> None:
        if other_repo:
            self.model.set_branches(ref.repo_id, ())
            self.header.set_title(str(ref))
            self.placeholder.show_opening(str(ref))
            self._show_placeholder()
        self.header.set_busy(True)
        self.repo_bar.set_refresh_enabled(False)
        self.header.set_status("Refreshing from the Hub…")

    def _loaded(self, catalog: RepoCatalog, final: bool) -> None:
        self.header.set_title(catalog.repo_id)
        self.stack.setCurrentWidget(self.table)
        self.details.show()
        if self._pending_splitter is not None:
            self.splitter.restoreState(self._pending_splitter)
            self._pending_splitter = None
        self.model.set_branches(catalog.repo_id, catalog.branches)  # the reset re-selects the row
        opened = self.loader.loading_ref
        if opened is not None and str(opened) not in self.settings.repo_history[:1]:
            self.settings.remember_repo(str(opened))  # only repos that opened join the list
            self.repo_bar.set_history(self.settings.repo_history)
        self._show_versions_button(catalog.repo_id)
        self.header.set_status(*catalog_status(catalog, final))
        self.catalog_shown.emit(catalog)

    def _failed(self, ref: RepoRef, exc: BaseException) -> None:
        report = self.errors.report(exc, f"opening {ref}")
        if self.catalog is not None and self.catalog.repo_id == ref.repo_id:
            self.header.set_status(f"⚠ Could not refresh: {report.message}", stale=True)
            return
        self.header.set_title(str(ref))
        self.placeholder.show_failure(str(ref), report.message, suggest=not self.settings.repo_history)
        self._show_placeholder()
        self.header.set_status("")

    def _finished(self) -> None:
        self.header.set_busy(False)
        self.repo_bar.set_refresh_enabled(self.catalog is not None)
        self.loading_finished.emit()

    # -- planning and the table -----------------------------------------------------------------------

    def _planning_changed(self) -> None:
        context, cache = self.planning.context, self.planning.cache_type
        self.model.set_planning(context, cache, self.planning.prompt)
        self.search_panel.set_planning(context, cache, self.model.hardware)

    def _hardware_planned(self, hardware: Hardware) -> None:
        self.planning_described.emit(hardware_summary(hardware))
        context, cache = self.planning.context, self.planning.cache_type
        self.model.set_planning(context, cache, self.planning.prompt)
        self.model.set_hardware(hardware)
        self.search_panel.set_planning(context, cache, hardware)
        self._show_details()

    def _show_details(self) -> None:
        self.details.show_row(self.table.selected_row(), self.model.hardware)

    def _download_clicked(self, branch: str) -> None:
        if self.catalog is not None:
            self.download_action.request(self.catalog.repo_id, branch, self.model.branch_row(branch))
