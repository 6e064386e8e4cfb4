"""The model bar: the picker (local models and saved servers), Load / Cancel / Unload / More, the load
progress, and once loaded the model's name, its backend (with an override menu) and why, and memory."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QAction, QPainter, QPaintEvent
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QMenu,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.chat.session_setup import LocalTarget
from app.ui import theme
from app.units import format_size

if TYPE_CHECKING:
    from app.remote.endpoints import Endpoint
    from app.ui.chat.worker_data import LoadedInfo


@dataclass(frozen=True)
class PickerEntry:
    """One entry of the model picker."""

    label: str
    local: LocalTarget | None = None
    endpoint: Endpoint | None = None


def list_local_targets(models_dir: Path) -> list[PickerEntry]:
    """Worker body: complete local models, as picker entries."""
    from app.downloads.registry import list_local_models

    entries = []
    for m in list_local_models(models_dir):
        if m.complete:
            label = f"{m.repo_id}:{m.branch or m.commit[:8]}"
            entries.append(PickerEntry(label, local=LocalTarget(m.path, m.repo_id, m.branch, m.commit)))
    return entries


def endpoint_entries() -> list[PickerEntry]:
    """Saved servers as picker entries (QuantDeskError when the endpoints file cannot be read)."""
    from app.remote.endpoints import EndpointStore

    return [
        PickerEntry(f"Server: {e.name} ({e.model or 'its model'})", endpoint=e)
        for e in EndpointStore().endpoints()
    ]


def same_entry(a: object, b: object) -> bool:
    """Whether two picker entries name the same model folder or the same server."""
    if not isinstance(a, PickerEntry) or not isinstance(b, PickerEntry):
        return False
    if a.local is not None and b.local is not None:
        return Path(a.local.model_dir) == Path(b.local.model_dir)
    if a.endpoint is not None and b.endpoint is not None:
        return a.endpoint.name.casefold() == b.endpoint.name.casefold()
    return False


def memory_text(info: LoadedInfo) -> str:
    """``124.0 MiB measured · 130.1 MiB estimated``."""
    if info.remote:
        return "Memory: on the server"
    text = f"{format_size(info.memory_bytes)} measured"
    if info.estimate_bytes:
        text += f" · {format_size(info.estimate_bytes)} estimated"
    return text


class ElidedLabel(QLabel):
    """A one-line label that shortens its text with "…" instead of widening (or clipping) its row; the
    whole text is in the tooltip."""

    def __init__(self, text: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.full_text = ""
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.set_full_text(text)

    def set_full_text(self, text: str, *, bold: bool = True) -> None:
        """The text to show (elided when the label is too narrow)."""
        self.full_text = text
        font = self.font()
        font.setBold(bold)
        self.setFont(font)
        self.setToolTip(text)
        self.updateGeometry()
        self.update()

    def shown_text(self) -> str:
        """What fits the label's width now."""
        return self.fontMetrics().elidedText(self.full_text, Qt.TextElideMode.ElideMiddle, self.width())

    def sizeHint(self) -> QSize:
        return QSize(self.fontMetrics().horizontalAdvance(self.full_text) + 4, super().sizeHint().height())

    def minimumSizeHint(self) -> QSize:
        return QSize(40, super().minimumSizeHint().height())

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.setPen(self.palette().color(self.foregroundRole()))
        painter.drawText(
            self.rect(), int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter), self.shown_text()
        )
        painter.end()


class ModelBar(QWidget):
    """Which model, and its load; every action goes out as a signal."""

    selection_changed = Signal()
    load_requested = Signal()
    cancel_requested = Signal()
    unload_requested = Signal()
    open_folder_requested = Signal()
    refresh_requested = Signal()
    new_endpoint_requested = Signal()
    edit_endpoint_requested = Signal(object)  # Endpoint
    test_endpoint_requested = Signal(object)  # Endpoint
    backend_chosen = Signal(str)  # backend name, "auto" for QuantDesk's choice

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._local: list[PickerEntry] = []
        self._extra: list[PickerEntry] = []
        self._servers: list[PickerEntry] = []
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(6)
        bar = QHBoxLayout()
        self.picker = QComboBox()
        self.picker.setMinimumWidth(200)
        self.picker.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.picker.setToolTip("Local models (complete downloads) and saved servers")
        self.picker.currentIndexChanged.connect(lambda _i: self.selection_changed.emit())
        bar.addWidget(self.picker, 1)
        self.load_button = QPushButton("Load")
        self.load_button.clicked.connect(self.load_requested)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel_requested)
        self.unload_button = QPushButton("Unload")
        self.unload_button.clicked.connect(self.unload_requested)
        self.more_button = QToolButton()
        self.more_button.setText("More")
        self.more_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        more = QMenu(self.more_button)
        more.addAction("Open a model folder…", self.open_folder_requested.emit)
        more.addAction("Refresh the list", self.refresh_requested.emit)
        more.addSeparator()
        more.addAction("New endpoint…", self.new_endpoint_requested.emit)
        self.edit_endpoint_action = more.addAction("Edit this endpoint…", self._edit_endpoint)
        self.test_action = more.addAction("Test connection", self._test_endpoint)
        self.more_button.setMenu(more)
        for w in (self.load_button, self.cancel_button, self.unload_button, self.more_button):
            bar.addWidget(w)
        layout.addLayout(bar)

        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.progress.setMaximumHeight(14)
        self.progress.setTextVisible(False)
        self.progress_label = QLabel()
        self.progress_label.setWordWrap(True)
        self.progress_row = QWidget()
        prow = QHBoxLayout(self.progress_row)
        prow.setContentsMargins(0, 0, 0, 0)
        prow.addWidget(self.progress, 1)
        prow.addWidget(self.progress_label, 2)
        self.progress_row.setVisible(False)
        layout.addWidget(self.progress_row)

        info = QHBoxLayout()
        self.model_label = ElidedLabel("No model loaded")
        info.addWidget(self.model_label, 1)
        self.backend_button = QToolButton()
        self.backend_button.setToolTip("The backend running this model; choose another one here")
        self.backend_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.backend_button.setVisible(False)
        self.backend_menu = QMenu(self.backend_button)
        self.backend_menu.setToolTipsVisible(True)
        self.backend_button.setMenu(self.backend_menu)
        info.addWidget(self.backend_button)
        layout.addLayout(info)
        reason_row = QHBoxLayout()
        self.backend_reason = QLabel()
        self.backend_reason.setStyleSheet(f"color: {theme.muted_text().name()};")
        self.backend_reason.setWordWrap(True)
        reason_row.addWidget(self.backend_reason, 1)
        self.memory_label = QLabel()
        self.memory_label.setToolTip("Memory measured after the load, and QuantDesk's estimate before it")
        reason_row.addWidget(self.memory_label)
        layout.addLayout(reason_row)

    # -- the picker ---------------------------------------------------------------------------------

    def set_local_entries(self, entries: list[PickerEntry]) -> None:
        """The local models found (a worker listed them)."""
        self._local = list(entries)
        self._fill()

    def set_server_entries(self, entries: list[PickerEntry]) -> None:
        """The saved servers."""
        self._servers = list(entries)
        self._fill()

    def add_entry(self, entry: PickerEntry) -> None:
        """Offer an entry that is not listed otherwise (a folder, a model to chat with) and select it."""
        self._extra = [e for e in self._extra if not same_entry(e, entry)] + [entry]
        self._fill(entry)

    def select(self, entry: PickerEntry) -> None:
        """Select the entry naming the same model or server (if listed)."""
        self._fill(entry)

    def selected_entry(self) -> PickerEntry | None:
        """The picker's current entry."""
        data = self.picker.currentData()
        return data if isinstance(data, PickerEntry) else None

    def _fill(self, select: PickerEntry | None = None) -> None:
        current = select or self.picker.currentData()
        self.picker.blockSignals(True)
        self.picker.clear()
        seen: set[str] = set()
        for entry in [*self._extra, *self._local, *self._servers]:
            key = entry.label if entry.local is None else str(entry.local.model_dir)
            if key not in seen:
                seen.add(key)
                self.picker.addItem(entry.label, entry)
        for i in range(self.picker.count()):
            if current is not None and same_entry(self.picker.itemData(i), current):
                self.picker.setCurrentIndex(i)
        self.picker.blockSignals(False)
        self.selection_changed.emit()

    def _edit_endpoint(self) -> None:
        entry = self.selected_entry()
        if entry is not None and entry.endpoint is not None:
            self.edit_endpoint_requested.emit(entry.endpoint)

    def _test_endpoint(self) -> None:
        entry = self.selected_entry()
        if entry is not None and entry.endpoint is not None:
            self.test_endpoint_requested.emit(entry.endpoint)

    # -- the load -----------------------------------------------------------------------------------

    def show_progress(self, fraction: float | None, text: str) -> None:
        """The progress row (None: busy without a figure)."""
        self.progress_row.setVisible(True)
        self.progress.setVisible(True)
        self.progress_label.setStyleSheet("")
        if fraction is None:
            self.progress.setRange(0, 0)
        else:
            self.progress.setRange(0, 100)
            self.progress.setValue(int(fraction * 100))
        self.progress_label.setText(text)

    def show_result(self, text: str, ok: bool) -> None:
        """A one-line result in the progress row (a connection test)."""
        self.progress_row.setVisible(True)
        self.progress.setVisible(False)
        color = theme.muted_text() if ok else theme.error_color()
        self.progress_label.setStyleSheet(f"color: {color.name()};")
        self.progress_label.setText(text)

    def show_loading(self, entry: PickerEntry) -> None:
        """A load started."""
        self.show_progress(0.0, "Loading…" if entry.local else "Connecting…")
        self.model_label.set_full_text(f"{entry.label} — loading")
        self._clear_backend()

    def show_loaded(self, title: str, info: LoadedInfo) -> None:
        """The model is loaded: name, backend and why, memory."""
        self.progress_row.setVisible(False)
        self.model_label.set_full_text(title)
        self.backend_button.setText(f"{info.backend}{' (your choice)' if info.backend_overridden else ''}")
        self.backend_button.setVisible(True)
        self.backend_reason.setText(
            f"Context {info.context_length} tokens. Backend {info.backend}: {info.backend_reason}"
        )
        self.backend_reason.setToolTip(info.backend_reason)
        self.memory_label.setText(memory_text(info))
        self.backend_menu.clear()
        auto = self.backend_menu.addAction("Automatic (QuantDesk chooses)")
        auto.triggered.connect(lambda: self.backend_chosen.emit("auto"))
        for option in info.options:
            text = option.display_name if option.compatible else f"{option.display_name} — {option.reason}"
            action: QAction = self.backend_menu.addAction(text)
            action.setEnabled(option.compatible)
            action.setToolTip(option.reason)
            action.setData(option.name)
            action.triggered.connect(lambda _c=False, n=option.name: self.backend_chosen.emit(n))

    def show_unloaded(self, text: str = "No model loaded") -> None:
        """No model (never loaded, unloaded, failed or cancelled)."""
        self.progress_row.setVisible(False)
        self.model_label.set_full_text(text, bold=False)
        self._clear_backend()

    def _clear_backend(self) -> None:
        self.backend_button.setVisible(False)
        self.backend_reason.setText("")
        self.memory_label.setText("")

    def set_state(self, *, loading: bool, loaded: bool) -> None:
        """Enable what applies now."""
        entry = self.selected_entry()
        is_endpoint = entry is not None and entry.endpoint is not None
        self.load_button.setEnabled(entry is not None and not loading)
        self.load_button.setText("Connect" if is_endpoint else "Load")
        self.cancel_button.setVisible(loading)
        self.unload_button.setEnabled(loaded and not loading)
        self.edit_endpoint_action.setEnabled(is_endpoint)
        self.test_action.setEnabled(is_endpoint)

    def has_entries(self) -> bool:
        """Whether the picker lists anything."""
        return self.picker.count() > 0
