"""The Local models page: QuantDesk's downloads and the Hugging Face cache, from the core's registry.

Listing, update checks, verification and deletion run in workers; the table shows repo, branch, commit,
size (for an incomplete download: what is on disk of the whole), complete or not, source and whether an
update is available.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    QSortFilterProxyModel,
    Qt,
    QUrl,
    Signal,
)
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from app.catalog.fit import FitStatus
from app.ui import theme
from app.ui.error_center import ErrorCenter
from app.ui.local_verify import VerifyPanel
from app.ui.local_work import UpdateState, check_updates, delete_model, list_models
from app.ui.settings import UiSettings
from app.ui.workers import Worker, start_worker
from app.units import format_size

if TYPE_CHECKING:
    from app.downloads.registry import LocalModel

SORT_ROLE = Qt.ItemDataRole.UserRole + 1
_Index = QModelIndex | QPersistentModelIndex


def size_text(model: LocalModel) -> str:
    """'1.20 GiB' for a complete model; '36.00 KiB of 32.90 GiB' for an incomplete one."""
    if model.complete:
        return format_size(model.on_disk)
    return f"{format_size(model.on_disk)} of {format_size(model.size_bytes)}"


class LocalModelsModel(QAbstractTableModel):
    """Rows of :class:`LocalModel`."""

    HEADERS = ("Repo", "Branch", "Commit", "Size", "State", "Source", "Update", "Folder")

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.models: list[LocalModel] = []
        self.updates: dict[str, UpdateState] = {}

    def set_models(self, models: list[LocalModel]) -> None:
        """Replace the list."""
        self.beginResetModel()
        self.models = list(models)
        self.endResetModel()

    def set_updates(self, updates: dict[str, UpdateState]) -> None:
        """Update-check results keyed by path."""
        self.updates.update(updates)
        if self.models:
            self.dataChanged.emit(self.index(0, 6), self.index(len(self.models) - 1, 6))

    def rowCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008 - Qt's signature
        return 0 if parent.isValid() else len(self.models)

    def columnCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.HEADERS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = 0) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return self.HEADERS[section]
        return None

    def data(self, index: _Index, role: int = 0) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self.models):
            return None
        m = self.models[index.row()]
        col = index.column()
        update = self.updates.get(str(m.path))
        if role == Qt.ItemDataRole.DisplayRole:
            return (
                m.repo_id,
                m.branch or "—",
                m.commit[:10],
                size_text(m),
                "Complete" if m.complete else "Incomplete",
                "QuantDesk" if m.source == "quantdesk" else "HF cache",
                update.text if update else "not checked",
                str(m.path),
            )[col]
        if role == SORT_ROLE:
            return m.on_disk if col == 3 else str(self.data(index, Qt.ItemDataRole.DisplayRole)).lower()
        if role == Qt.ItemDataRole.ToolTipRole:
            if col == 6 and update:
                return update.detail or update.text
            if col == 3 and not m.complete:
                return (
                    f"{format_size(m.on_disk)} on disk; {format_size(m.missing_bytes)} still to download "
                    f"of {format_size(m.size_bytes)}."
                )
            if col == 4 and not m.complete:
                return "Not every file is in place yet: resume it on the Downloads page."
            return str(m.path) if col == 7 else None
        if role == Qt.ItemDataRole.ForegroundRole:
            if col == 4:
                return theme.badge_colors(FitStatus.FITS)[0] if m.complete else theme.warning_color()
            if col == 6 and update and update.text == "Update available":
                return theme.warning_color()
            if col == 6 and update is None:
                return theme.muted_text()
        if role == Qt.ItemDataRole.TextAlignmentRole and col == 3:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None


def confirm_delete(parent: QWidget, model: LocalModel) -> bool:
    """Ask before deleting, stating the space it frees."""
    where = "the Hugging Face cache" if model.source == "hf-cache" else str(model.path)
    unfinished = (
        f" (the download was not finished: {format_size(model.missing_bytes)} of it were never fetched)"
        if not model.complete
        else ""
    )
    answer = QMessageBox.question(
        parent,
        "Delete model",
        f"Delete {model.repo_id} : {model.branch or model.commit[:10]} from {where}?\n\n"
        f"This frees about {format_size(model.on_disk)}{unfinished}. It cannot be undone.",
        QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
        QMessageBox.StandardButton.No,
    )
    return answer == QMessageBox.StandardButton.Yes


class LocalModelsPage(QWidget):
    """Downloaded models with open / delete / check for updates / chat."""

    chat_requested = Signal(object)  # LocalModel
    refreshed = Signal()
    deleted = Signal(int)  # bytes freed

    def __init__(self, settings: UiSettings, errors: ErrorCenter, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.settings = settings
        self.errors = errors
        self.chat_available = False
        # Set by the window: whether a model's folder is being written by a download right now.
        self.is_busy: Callable[[LocalModel], bool] = lambda _model: False
        self.confirm_delete: Callable[[QWidget, LocalModel], bool] = confirm_delete
        self._worker: Worker[Any] | None = None
        self._pending_refresh = False
        layout = QVBoxLayout(self)
        layout.setContentsMargins(12, 10, 12, 6)
        header = QHBoxLayout()
        title = QLabel("Local models")
        font = title.font()
        font.setPointSizeF(font.pointSizeF() * 1.3)
        font.setBold(True)
        title.setFont(font)
        self.summary = QLabel()
        self.summary.setStyleSheet(f"color: {theme.muted_text().name()};")
        header.addWidget(title)
        header.addSpacing(12)
        header.addWidget(self.summary, 1)
        self.refresh_button = QPushButton("Refresh")
        self.check_button = QPushButton("Check for updates")
        self.refresh_button.clicked.connect(self.refresh)
        self.check_button.clicked.connect(self.check_for_updates)
        header.addWidget(self.refresh_button)
        header.addWidget(self.check_button)
        layout.addLayout(header)

        self.model = LocalModelsModel(self)
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
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setWordWrap(False)
        self.table.doubleClicked.connect(lambda _i: self.open_folder())
        self.table.selectionModel().selectionChanged.connect(lambda *_: self._update_buttons())
        layout.addWidget(self.table, 1)

        self.empty = QLabel("No local models yet. Downloads appear here when they start.")
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty.setStyleSheet(f"color: {theme.muted_text().name()};")
        layout.addWidget(self.empty)

        actions = QHBoxLayout()
        self.open_button = QPushButton("Open folder")
        self.verify_button = QPushButton("Verify")
        self.verify_button.setToolTip(
            "Re-hash every file against the Hub's recorded sha256 / git ids; repair re-fetches only "
            "the damaged ones"
        )
        self.delete_button = QPushButton("Delete…")
        self.chat_button = QPushButton("Chat with this model")
        self.open_button.clicked.connect(self.open_folder)
        self.verify_button.clicked.connect(self.verify_selected)
        self.delete_button.clicked.connect(self.delete_selected)
        self.chat_button.clicked.connect(self._chat)
        self.verify_panel = VerifyPanel(errors)
        self.verify_panel.finished.connect(lambda _sentence: self._update_buttons())
        self.verify_panel.repaired.connect(self.refresh)
        layout.addWidget(self.verify_panel)
        actions.addWidget(self.open_button)
        actions.addWidget(self.verify_button)
        actions.addWidget(self.delete_button)
        actions.addStretch(1)
        actions.addWidget(self.chat_button)
        layout.addLayout(actions)
        self._update_buttons()

    # -- commands -------------------------------------------------------------------------------------

    def refresh(self) -> None:
        """Re-read the registry (worker)."""
        if self._worker is not None:
            self._pending_refresh = True
            return
        self.refresh_button.setEnabled(False)
        self._worker = start_worker(
            list_models,
            self.settings.models_dir,
            connect={
                "returned": self._listed,
                "errored": lambda exc: self.errors.report(exc, "listing local models"),
                "finished": self._refresh_done,
            },
        )

    def check_for_updates(self) -> None:
        """Ask the Hub for each model's branch head (worker)."""
        models = list(self.model.models)
        if not models:
            return
        self.model.set_updates({str(m.path): UpdateState("Checking…") for m in models})
        self.check_button.setEnabled(False)
        start_worker(
            check_updates,
            models,
            connect={
                "returned": self.model.set_updates,
                "errored": lambda exc: self.errors.report(exc, "checking for updates"),
                "finished": lambda: self.check_button.setEnabled(True),
            },
        )

    def selected(self) -> LocalModel | None:
        """The selected model."""
        rows = self.table.selectionModel().selectedRows()
        if not rows:
            return None
        return self.model.models[self.proxy.mapToSource(rows[0]).row()]

    def select_row(self, row: int) -> None:
        """Select a source row (tests)."""
        self.table.selectRow(self.proxy.mapFromSource(self.model.index(row, 0)).row())

    def open_folder(self) -> None:
        """Open the selected model's folder in the file manager."""
        model = self.selected()
        if model is not None:
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(model.path)))

    def verify_selected(self) -> None:
        """Re-hash the selected model on a worker, with progress; offer to repair what is damaged."""
        model = self.selected()
        if model is None or not self._verifiable(model):
            return
        if self.is_busy(model):
            self.errors.report_message(
                f"{model.repo_id} : {model.branch} is downloading.",
                context="verifying a model",
                detail="Verify it once its download has finished.",
            )
            return
        self.verify_panel.start(model)
        self._update_buttons()

    @staticmethod
    def _verifiable(model: LocalModel) -> bool:
        return model.source == "quantdesk" and model.complete

    def delete_selected(self) -> None:
        """Confirm, then delete the selected model (worker)."""
        model = self.selected()
        if model is None:
            return
        if self.is_busy(model):
            self.errors.report_message(
                f"{model.repo_id} : {model.branch} is downloading.",
                context="deleting a model",
                detail="Pause or cancel its download on the Downloads page, then delete it.",
            )
            return
        if not self.confirm_delete(self, model):
            return
        self.delete_button.setEnabled(False)
        start_worker(
            delete_model,
            model,
            connect={
                "returned": self._deleted,
                "errored": lambda exc: self.errors.report(exc, f"deleting {model.repo_id}"),
                "finished": self.refresh,
            },
        )

    # -- internals ------------------------------------------------------------------------------------

    def _listed(self, listing: tuple[list[LocalModel], list[str]]) -> None:
        models, sentences = listing
        for sentence in sentences:
            self.errors.report_message(sentence, context="listing local models")
        self.model.set_models(models)
        self.table.resizeColumnsToContents()
        total = sum(m.on_disk for m in models)
        complete = sum(1 for m in models if m.complete)
        plural = "s" if len(models) != 1 else ""
        self.summary.setText(
            f"{len(models)} model{plural}, {complete} complete · {format_size(total)}" if models else ""
        )
        self.table.setVisible(bool(models))
        self.empty.setVisible(not models)
        if models and not self.table.selectionModel().hasSelection():
            self.table.selectRow(0)
        self._update_buttons()
        self.refreshed.emit()

    def _refresh_done(self) -> None:
        self._worker = None
        self.refresh_button.setEnabled(True)
        if self._pending_refresh:
            self._pending_refresh = False
            self.refresh()

    def _deleted(self, freed: int) -> None:
        self.summary.setText(f"Deleted: {format_size(freed)} freed.")
        self.deleted.emit(freed)

    def _chat(self) -> None:
        model = self.selected()
        if model is not None and model.complete:
            self.chat_requested.emit(model)

    def _update_buttons(self) -> None:
        model = self.selected()
        self.open_button.setEnabled(model is not None)
        self.delete_button.setEnabled(model is not None)
        self.verify_button.setEnabled(
            model is not None and self._verifiable(model) and not self.verify_panel.busy
        )
        self.check_button.setEnabled(bool(self.model.models))
        self.chat_button.setEnabled(model is not None and model.complete and self.chat_available)
        self.chat_button.setToolTip(
            "Open a chat with this model"
            if self.chat_available
            else "The chat page is not part of this version yet."
        )
