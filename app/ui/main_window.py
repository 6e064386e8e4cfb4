"""The main window: a sidebar (Models, Downloads, Local models, Settings), the error banner, the pages,
and a status bar with the hardware and download summary. Window geometry and splitters persist."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QSize, Signal
from PySide6.QtGui import QCloseEvent, QIcon
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QStackedWidget,
    QStyle,
    QVBoxLayout,
    QWidget,
)

from app.hardware import Hardware
from app.ui import theme
from app.ui.chat import ChatPage
from app.ui.downloads_controller import ACTIVE, DownloadsController, JobState
from app.ui.downloads_page import DownloadsPage, format_speed
from app.ui.error_banner import ErrorBanner
from app.ui.error_center import ErrorCenter
from app.ui.local_page import LocalModelsPage
from app.ui.models.branch_model import LocalInfo, LocalState
from app.ui.models.page import ModelsPage
from app.ui.models.planning_bar import hardware_summary
from app.ui.settings import UiSettings
from app.ui.settings_page import SettingsPage
from app.ui.workers import start_worker

if TYPE_CHECKING:
    from app.catalog.service import RepoCatalog
    from app.downloads.registry import LocalModel

_REGISTRY_STATES = {
    "downloaded": LocalState.DOWNLOADED,
    "update available": LocalState.UPDATE,
    "incomplete": LocalState.INCOMPLETE,
}


def detect() -> Hardware:
    """Worker body: NVML and psutil; then warm up the modules later work needs.

    Importing the catalog service and the downloads package pulls in huggingface_hub (about half a
    second). Done here, at start-up, while the user looks at the window, it is not on the path of the
    first repo opened or the first download.
    """
    from app.hardware import detect_hardware

    hardware = detect_hardware()
    import app.catalog.service
    import app.downloads.registry  # noqa: F401

    return hardware


def branch_states(repo_id: str, commits: dict[str, str]) -> tuple[str, dict[str, str]]:
    """Worker body: the registry's view of a repo's branches on this machine."""
    from app.downloads.registry import branch_states as states

    return repo_id, states(repo_id, commits)


class MainWindow(QMainWindow):
    """QuantDesk's window."""

    hardware_ready = Signal(object)

    def __init__(
        self,
        settings: UiSettings | None = None,
        errors: ErrorCenter | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.settings = settings or UiSettings()
        self.errors = errors or ErrorCenter(self)
        self.hardware: Hardware | None = None
        self._registry_states: dict[str, str] = {}
        self._registry_repo = ""
        self.setWindowTitle("QuantDesk")
        self.setMinimumSize(QSize(760, 520))

        self.controller = DownloadsController(self.settings, self.errors, parent=self)
        self.models_page = ModelsPage(self.settings, self.errors)
        self.downloads_page = DownloadsPage(self.controller)
        self.local_page = LocalModelsPage(self.settings, self.errors)
        self.settings_page = SettingsPage(self.settings, self.errors)
        self.chat_page = ChatPage(self.settings, self.errors)

        central = QWidget()
        outer = QHBoxLayout(central)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.setSpacing(0)
        self.sidebar = QListWidget()
        self.sidebar.setObjectName("sidebar")
        self.sidebar.setFixedWidth(156)
        self.sidebar.setIconSize(QSize(20, 20))
        self.sidebar.setSpacing(2)
        self.sidebar.setFrameShape(QListWidget.Shape.NoFrame)
        outer.addWidget(self.sidebar)
        right = QVBoxLayout()
        right.setContentsMargins(8, 8, 8, 0)
        right.setSpacing(6)
        self.banner = ErrorBanner(self.errors)
        right.addWidget(self.banner)
        self.stack = QStackedWidget()
        right.addWidget(self.stack, 1)
        outer.addLayout(right, 1)
        self.setCentralWidget(central)

        style = self.style()
        self.pages: dict[str, QWidget] = {}
        self._items: dict[str, QListWidgetItem] = {}
        self.add_page("Models", self.models_page, style.standardIcon(QStyle.StandardPixmap.SP_DirHomeIcon))
        self.add_page(
            "Downloads", self.downloads_page, style.standardIcon(QStyle.StandardPixmap.SP_ArrowDown)
        )
        self.add_page(
            "Local models", self.local_page, style.standardIcon(QStyle.StandardPixmap.SP_DriveHDIcon)
        )
        self.add_page("Chat", self.chat_page, theme.chat_icon())
        self.add_page(
            "Settings",
            self.settings_page,
            style.standardIcon(QStyle.StandardPixmap.SP_FileDialogDetailedView),
        )
        self.sidebar.currentRowChanged.connect(self._page_changed)

        self.hardware_label = QLabel("Detecting GPUs…")
        self.downloads_label = QLabel()
        self.statusBar().addWidget(self.hardware_label, 1)
        self.models_page.planning_described.connect(self.hardware_label.setText)
        self.statusBar().addPermanentWidget(self.downloads_label)

        self.models_page.download_requested.connect(self.download)
        self.models_page.catalog_shown.connect(self._catalog_shown)
        self.controller.job_changed.connect(self._jobs_changed)
        self.controller.job_added.connect(self._jobs_changed)
        self.controller.job_removed.connect(self._jobs_changed)
        self.controller.local_changed.connect(self._local_changed)
        self.controller.unfinished_found.connect(self._unfinished_found)
        self.downloads_page.count_changed.connect(self._downloads_count)
        self.local_page.deleted.connect(lambda _freed: self._local_changed())
        self.settings_page.parallel_changed.connect(self.controller.set_parallel)
        self.local_page.is_busy = self._downloading
        self.set_chat_handler(self._chat_with)
        self.controller.local_changed.connect(self.chat_page.refresh_models)

        self._restore()
        self.sidebar.setCurrentRow(0)

    # -- pages ----------------------------------------------------------------------------------------

    def add_page(self, title: str, widget: QWidget, icon: QIcon | None = None) -> int:
        """Add a page to the sidebar (issue 7 adds Chat this way); returns its index."""
        item = QListWidgetItem(icon or QIcon(), title)
        item.setSizeHint(QSize(0, 36))
        self.sidebar.addItem(item)
        self.stack.addWidget(widget)
        self.pages[title] = widget
        self._items[title] = item
        return self.stack.count() - 1

    def show_page(self, title: str) -> None:
        """Switch to a page by its sidebar title."""
        widget = self.pages[title]
        self.sidebar.setCurrentRow(self.stack.indexOf(widget))

    def set_chat_handler(self, handler: Any) -> None:
        """Enable "Chat with this model": ``handler(LocalModel)`` (the chat page of issue 7)."""
        self.local_page.chat_available = True
        self.local_page.chat_requested.connect(handler)
        self.local_page._update_buttons()

    def _chat_with(self, model: LocalModel) -> None:
        self.show_page("Chat")
        self.chat_page.open_local_model(model)

    def _page_changed(self, row: int) -> None:
        self.stack.setCurrentIndex(row)
        if self.stack.currentWidget() is self.local_page:
            self.local_page.refresh()

    # -- start-up -------------------------------------------------------------------------------------

    def start_background(self) -> None:
        """Everything that needs I/O, started once the window is on screen."""
        start_worker(
            detect,
            connect={
                "returned": self._hardware_detected,
                "errored": lambda exc: self.errors.report(exc, "detecting GPUs"),
            },
        )
        self.controller.load_unfinished()
        self.settings_page.load()
        self.chat_page.refresh_models()
        self.models_page.open_last_repo()

    def _hardware_detected(self, hardware: Hardware) -> None:
        self.hardware = hardware
        self.hardware_label.setText(hardware_summary(hardware))
        self.models_page.set_hardware(hardware)  # then planning_described keeps the label current
        self.hardware_ready.emit(hardware)

    # -- downloads ------------------------------------------------------------------------------------

    def download(self, repo_id: str, branch: str) -> str:
        """Queue a branch download (from the Models page)."""
        key = self.controller.start(repo_id, branch)
        self._update_local_column()
        return key

    def _downloading(self, model: LocalModel) -> bool:
        job = self.controller.job(f"{model.repo_id}:{model.branch}") if model.branch else None
        return job is not None and (job.state in ACTIVE or job.state is JobState.QUEUED)

    def _unfinished_found(self, count: int) -> None:
        if count and not self.settings.auto_resume:
            self.statusBar().showMessage(
                f"{count} download{'s' if count != 1 else ''} did not finish last time: see Downloads.", 15000
            )

    def _downloads_count(self, count: int) -> None:
        self._items["Downloads"].setText(f"Downloads ({count})" if count else "Downloads")

    def _jobs_changed(self, _key: str = "") -> None:
        active = self.controller.active_count()
        if active:
            speed = sum(j.progress.speed_bps for j in self.controller.jobs.values() if j.progress)
            self.downloads_label.setText(f"{active} downloading · {format_speed(speed)}".rstrip(" ·"))
        else:
            self.downloads_label.setText("")
        self._update_local_column()

    def _local_changed(self) -> None:
        self._refresh_registry_states()
        if self.stack.currentWidget() is self.local_page:
            self.local_page.refresh()

    def _catalog_shown(self, catalog: RepoCatalog) -> None:
        if catalog.repo_id != self._registry_repo:
            self._registry_states = {}
            self._registry_repo = catalog.repo_id
        self._update_local_column()
        self._refresh_registry_states()

    def _refresh_registry_states(self) -> None:
        catalog = self.models_page.catalog
        if catalog is None:
            return
        commits = {b.branch: b.commit for b in catalog.branches}
        start_worker(
            branch_states,
            catalog.repo_id,
            commits,
            connect={
                "returned": self._registry_loaded,
                "errored": lambda exc: self.errors.report(exc, "reading local models"),
            },
        )

    def _registry_loaded(self, result: tuple[str, dict[str, str]]) -> None:
        repo_id, states = result
        if repo_id == self._registry_repo:
            self._registry_states = states
            self._update_local_column()

    def _update_local_column(self) -> None:
        catalog = self.models_page.catalog
        if catalog is None:
            return
        merged: dict[str, LocalInfo] = {
            branch: LocalInfo(_REGISTRY_STATES[state])
            for branch, state in self._registry_states.items()
            if state in _REGISTRY_STATES
        }
        merged.update(self.controller.local_infos(catalog.repo_id))
        self.models_page.set_local(merged)

    # -- persistence ----------------------------------------------------------------------------------

    def _restore(self) -> None:
        geometry = self.settings.bytes_value("window/geometry")
        if geometry is None or not self.restoreGeometry(geometry):
            self.resize(1360, 860)
        self.models_page.restore_state()

    def save_state(self) -> None:
        """Persist geometry and splitters."""
        self.settings.set_bytes_value("window/geometry", self.saveGeometry())
        self.models_page.save_state()
        self.chat_page.save_state()
        self.settings.sync()

    def closeEvent(self, event: QCloseEvent) -> None:
        self.save_state()
        self.chat_page.shutdown()  # stops a reply (the partial text is saved) and frees the model
        self.controller.shutdown()
        super().closeEvent(event)
