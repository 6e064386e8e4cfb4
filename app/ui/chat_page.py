"""The Chat page: pick a local model or a saved endpoint, load it on the chat thread, and chat.

Layout: conversations on the left (new, rename, delete, search, export, import); the model bar (picker,
load with progress and cancel, backend and why with an override menu, memory measured vs estimated),
the template (name, source, override, "Preview prompt"), the context budget meter, the transcript and
the input in the middle; the model's settings, each with its source, on the right.

Every model operation goes through :class:`app.ui.chat_worker.ChatController` (the chat thread); this
page only displays. Saved conversations are read here (SQLite, milliseconds) and written by the
engine on the chat thread.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QAction, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSplitter,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.chat.profiles import ModelSettings, Profile, ProfileStore, effective_settings
from app.chat.session_setup import LocalTarget
from app.ui import theme
from app.ui.chat_widgets import (
    RELOAD_FIELDS,
    BudgetMeter,
    ChatInput,
    EndpointDialog,
    MessageWidget,
    PromptPreviewDialog,
    SettingsPanel,
    layer_with,
)
from app.ui.chat_worker import (
    ChatController,
    ChatState,
    LoadedInfo,
    LoadRequest,
    ReplyOutcome,
    StreamStart,
)
from app.ui.error_center import ErrorCenter
from app.ui.workers import start_worker
from app.units import format_size

if TYPE_CHECKING:
    from app.backends.base import GenerationStats
    from app.chat.conversation import Conversation
    from app.chat.engine import PromptPreview
    from app.chat.storage import ChatStore
    from app.downloads.registry import LocalModel
    from app.remote.endpoints import Endpoint
    from app.ui.settings import UiSettings

NO_MODEL_REASON = "Load a model above to chat."


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


def test_endpoint(endpoint: Endpoint, api_key: str | None) -> str:
    """Worker body: "Test connection" (``api_key`` None: the stored key)."""
    from app.remote.endpoints import KEEP_KEY, test_connection

    return test_connection(endpoint, KEEP_KEY if api_key is None else api_key).message


test_endpoint.__test__ = False  # type: ignore[attr-defined]


class ChatPage(QWidget):
    """The chat page."""

    model_loaded = Signal(object)  # LoadedInfo
    load_finished = Signal(bool)  # loaded or not
    reply_done = Signal(object)  # ReplyOutcome
    state_shown = Signal()
    preview_shown = Signal(object)  # PromptPreview
    endpoint_tested = Signal(str, bool)

    def __init__(
        self,
        settings: UiSettings,
        errors: ErrorCenter,
        store: ChatStore | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.settings = settings
        self.errors = errors
        self._owns_store = store is None
        if store is None:
            from app.chat.storage import ChatStore

            store = ChatStore()
        self.store = store
        self.profiles = ProfileStore()
        self.controller = ChatController(store, self)
        worker = self.controller.worker
        worker.load_progress.connect(self._load_progress)
        worker.loaded.connect(self._loaded)
        worker.load_failed.connect(self._load_failed)
        worker.unloaded.connect(self._unloaded)
        worker.state_changed.connect(self._show_state)
        worker.stream_started.connect(self._stream_started)
        worker.chunk.connect(self._chunk)
        worker.reply_finished.connect(self._reply_finished)
        worker.preview_ready.connect(self._preview_ready)
        worker.failed.connect(lambda exc, what: self.errors.report(exc, what))

        # Injectable for tests: dialogs that would block.
        self.ask_text: Callable[[str, str, str, bool], str | None] = _ask_text
        self.confirm: Callable[[str], bool] = lambda text: (
            QMessageBox.question(self, "QuantDesk", text) == QMessageBox.StandardButton.Yes
        )
        self.ask_save_path: Callable[[str, str, str], Path | None] = lambda title, filt, name: _path(
            QFileDialog.getSaveFileName(self, title, name, filt)[0]
        )
        self.ask_open_path: Callable[[str, str], Path | None] = lambda title, filt: _path(
            QFileDialog.getOpenFileName(self, title, "", filt)[0]
        )
        self.ask_folder: Callable[[], Path | None] = lambda: _path(
            QFileDialog.getExistingDirectory(self, "Open a model folder")
        )

        self.info: LoadedInfo | None = None
        self.state: ChatState | None = None
        self.loading = False
        self.streaming = False
        self.chat_layer = ModelSettings()
        self.current_id: str | None = None  # the conversation shown
        self.message_widgets: dict[str, MessageWidget] = {}
        self.stats: dict[str, GenerationStats] = {}
        self._stream_widget: MessageWidget | None = None
        self._extra_entries: list[PickerEntry] = []
        self._local_entries: list[PickerEntry] = []
        self.preview_dialog: PromptPreviewDialog | None = None
        self.endpoint_dialog: EndpointDialog | None = None
        # What the GUI saw of the last reply (benchmarks/gui_latency.py): send, first chunk, end.
        self.timing: dict[str, float] = {}
        self._build()
        self.refresh_conversations()
        self._update_enabled()

    # -- layout ---------------------------------------------------------------------------------------

    def _build(self) -> None:
        outer = QHBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        outer.addWidget(self.splitter)

        # Conversations
        left = QWidget()
        lv = QVBoxLayout(left)
        lv.setContentsMargins(0, 0, 4, 0)
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search conversations")
        self.search.setClearButtonEnabled(True)
        self.search.textChanged.connect(lambda _t: self.refresh_conversations())
        lv.addWidget(self.search)
        self.conversations = QListWidget()
        self.conversations.currentItemChanged.connect(self._conversation_selected)
        lv.addWidget(self.conversations, 1)
        row = QHBoxLayout()
        self.new_button = QPushButton("New")
        self.new_button.setToolTip("New chat (Ctrl+N)")
        self.new_button.clicked.connect(self.new_chat)
        self.rename_button = QPushButton("Rename")
        self.rename_button.clicked.connect(self.rename_conversation)
        self.delete_button = QPushButton("Delete")
        self.delete_button.clicked.connect(self.delete_conversation)
        for b in (self.new_button, self.rename_button, self.delete_button):
            row.addWidget(b)
        lv.addLayout(row)
        row2 = QHBoxLayout()
        self.export_button = QToolButton()
        self.export_button.setText("Export")
        self.export_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        export_menu = QMenu(self.export_button)
        export_menu.addAction("Markdown…", lambda: self.export_conversation("md"))
        export_menu.addAction("JSON…", lambda: self.export_conversation("json"))
        self.export_button.setMenu(export_menu)
        self.import_button = QPushButton("Import JSON…")
        self.import_button.clicked.connect(self.import_conversation)
        row2.addWidget(self.export_button)
        row2.addWidget(self.import_button)
        row2.addStretch(1)
        lv.addLayout(row2)
        self.splitter.addWidget(left)

        # Middle
        middle = QWidget()
        mv = QVBoxLayout(middle)
        mv.setContentsMargins(4, 0, 4, 0)
        mv.setSpacing(6)
        bar = QHBoxLayout()
        self.picker = QComboBox()
        self.picker.setMinimumWidth(280)
        self.picker.setToolTip("Local models (complete downloads) and saved servers")
        self.picker.currentIndexChanged.connect(lambda _i: self._update_enabled())
        bar.addWidget(self.picker, 1)
        self.load_button = QPushButton("Load")
        self.load_button.clicked.connect(self.load_selected)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.controller.cancel_load)
        self.unload_button = QPushButton("Unload")
        self.unload_button.clicked.connect(self.unload)
        self.more_button = QToolButton()
        self.more_button.setText("More")
        self.more_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        more = QMenu(self.more_button)
        more.addAction("Open a model folder…", self.open_folder)
        more.addAction("Refresh the list", self.refresh_models)
        more.addSeparator()
        more.addAction("New endpoint…", lambda: self.edit_endpoint(None))
        self.edit_endpoint_action = more.addAction("Edit this endpoint…", self._edit_selected_endpoint)
        self.test_action = more.addAction("Test connection", self.test_selected_endpoint)
        self.more_button.setMenu(more)
        for w in (self.load_button, self.cancel_button, self.unload_button, self.more_button):
            bar.addWidget(w)
        mv.addLayout(bar)
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.progress.setMaximumHeight(14)
        self.progress.setTextVisible(False)
        self.progress_label = QLabel()
        prow = QHBoxLayout()
        prow.addWidget(self.progress, 1)
        prow.addWidget(self.progress_label, 2)
        self.progress_row = QWidget()
        self.progress_row.setLayout(prow)
        prow.setContentsMargins(0, 0, 0, 0)
        self.progress_row.setVisible(False)
        mv.addWidget(self.progress_row)

        info = QHBoxLayout()
        self.model_label = QLabel("No model loaded")
        self.model_label.setTextFormat(Qt.TextFormat.RichText)
        info.addWidget(self.model_label)
        self.backend_button = QToolButton()
        self.backend_button.setToolTip("The backend running this model; choose another one here")
        self.backend_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.backend_button.setVisible(False)
        self.backend_menu = QMenu(self.backend_button)
        self.backend_button.setMenu(self.backend_menu)
        info.addWidget(self.backend_button)
        info.addStretch(1)
        mv.addLayout(info)
        reason_row = QHBoxLayout()
        self.backend_reason = QLabel()
        self.backend_reason.setStyleSheet(f"color: {theme.muted_text().name()};")
        self.backend_reason.setWordWrap(True)
        reason_row.addWidget(self.backend_reason, 1)
        self.memory_label = QLabel()
        self.memory_label.setToolTip("Memory measured after the load, and QuantDesk's estimate before it")
        reason_row.addWidget(self.memory_label)
        mv.addLayout(reason_row)

        trow = QHBoxLayout()
        self.template_label = QLabel()
        self.template_label.setTextFormat(Qt.TextFormat.RichText)
        trow.addWidget(self.template_label, 1)
        self.template_box = QComboBox()
        self.template_box.setToolTip("Override the prompt template")
        self.template_box.activated.connect(self._template_chosen)
        trow.addWidget(self.template_box)
        self.preview_button = QPushButton("Preview prompt")
        self.preview_button.clicked.connect(self.show_preview)
        trow.addWidget(self.preview_button)
        mv.addLayout(trow)

        brow = QHBoxLayout()
        self.budget = BudgetMeter()
        brow.addWidget(self.budget, 1)
        self.budget_label = QLabel()
        self.budget_label.setStyleSheet(f"color: {theme.muted_text().name()};")
        brow.addWidget(self.budget_label)
        mv.addLayout(brow)

        self.transcript_scroll = QScrollArea()
        self.transcript_scroll.setWidgetResizable(True)
        self.transcript = QWidget()
        self.transcript_layout = QVBoxLayout(self.transcript)
        self.transcript_layout.setContentsMargins(4, 4, 4, 4)
        self.transcript_layout.setSpacing(8)
        self.transcript_layout.addStretch(1)
        self.transcript_scroll.setWidget(self.transcript)
        mv.addWidget(self.transcript_scroll, 1)

        self.reason_label = QLabel(NO_MODEL_REASON)
        self.reason_label.setStyleSheet(f"color: {theme.muted_text().name()};")
        mv.addWidget(self.reason_label)
        irow = QHBoxLayout()
        self.input = ChatInput()
        self.input.submitted.connect(self.send)
        self.input.stop_requested.connect(self.stop)
        self.input.new_chat_requested.connect(self.new_chat)
        irow.addWidget(self.input, 1)
        col = QVBoxLayout()
        self.send_button = QPushButton("Send")
        self.send_button.clicked.connect(lambda: self.send(self.input.toPlainText()))
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip("Stop the reply (Esc); the partial reply is kept")
        self.stop_button.clicked.connect(self.stop)
        col.addWidget(self.send_button)
        col.addWidget(self.stop_button)
        irow.addLayout(col)
        mv.addLayout(irow)
        self.splitter.addWidget(middle)

        # Settings
        self.settings_panel = SettingsPanel()
        self.settings_panel.changed.connect(self._setting_changed)
        self.settings_panel.save_requested.connect(self.save_settings)
        self.settings_panel.reset_requested.connect(self.reset_settings)
        self.settings_panel.reload_requested.connect(self.reload)
        side = QScrollArea()
        side.setWidgetResizable(True)
        side.setWidget(self.settings_panel)
        side.setMinimumWidth(320)
        self.splitter.addWidget(side)
        self.splitter.setStretchFactor(0, 0)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setStretchFactor(2, 0)
        self.splitter.setSizes([190, 800, 330])

        for keys, slot in (("Ctrl+N", self.new_chat), ("Esc", self.stop)):
            shortcut = QShortcut(QKeySequence(keys), self)
            shortcut.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            shortcut.activated.connect(slot)
        self._fill_templates()

    def _fill_templates(self) -> None:
        from app.chat.templates import load_user_templates, template_names

        self.template_box.clear()
        self.template_box.addItem("Detected", "")
        self.template_box.addItem("The model's own (jinja)", "jinja")
        for name in template_names(load_user_templates()):
            self.template_box.addItem(name, name)

    # -- picker ---------------------------------------------------------------------------------------

    def refresh_models(self) -> None:
        """Re-list local models (worker) and saved endpoints."""
        start_worker(
            list_local_targets,
            self.settings.models_dir,
            connect={
                "returned": self._models_listed,
                "errored": lambda exc: self.errors.report(exc, "listing local models"),
            },
        )

    def _models_listed(self, entries: list[PickerEntry]) -> None:
        self._local_entries = entries
        self._fill_picker()

    def _endpoints(self) -> list[PickerEntry]:
        from app.errors import QuantDeskError
        from app.remote.endpoints import EndpointStore

        try:
            saved = EndpointStore().endpoints()
        except QuantDeskError as exc:
            self.errors.report(exc, "reading saved endpoints")
            return []
        return [PickerEntry(f"Server: {e.name} ({e.model or 'its model'})", endpoint=e) for e in saved]

    def _fill_picker(self, select: PickerEntry | None = None) -> None:
        current = select or self.picker.currentData()
        self.picker.blockSignals(True)
        self.picker.clear()
        seen: set[str] = set()
        for entry in [*self._extra_entries, *self._local_entries, *self._endpoints()]:
            key = entry.label if entry.local is None else str(entry.local.model_dir)
            if key in seen:
                continue
            seen.add(key)
            self.picker.addItem(entry.label, entry)
        if current is not None:
            for i in range(self.picker.count()):
                if _same(self.picker.itemData(i), current):
                    self.picker.setCurrentIndex(i)
        self.picker.blockSignals(False)
        self._update_enabled()

    def add_model_folder(self, path: Path, label: str | None = None) -> PickerEntry:
        """Offer a model folder in the picker (and select it)."""
        entry = PickerEntry(label or f"{path.name} (folder)", local=LocalTarget(path))
        self._extra_entries = [e for e in self._extra_entries if not _same(e, entry)] + [entry]
        self._fill_picker(entry)
        return entry

    def open_folder(self) -> None:
        """Choose a model folder on disk."""
        path = self.ask_folder()
        if path is not None:
            self.add_model_folder(path)

    def open_local_model(self, model: LocalModel) -> None:
        """ "Chat with this model" from the Local models page: select it and load it."""
        label = f"{model.repo_id}:{model.branch or model.commit[:8]}"
        entry = PickerEntry(label, local=LocalTarget(model.path, model.repo_id, model.branch, model.commit))
        self._extra_entries = [e for e in self._extra_entries if not _same(e, entry)] + [entry]
        self._fill_picker(entry)
        self.load_selected()

    def selected_entry(self) -> PickerEntry | None:
        """The picker's current entry."""
        data = self.picker.currentData()
        return data if isinstance(data, PickerEntry) else None

    # -- endpoints ------------------------------------------------------------------------------------

    def _edit_selected_endpoint(self) -> None:
        entry = self.selected_entry()
        self.edit_endpoint(entry.endpoint if entry else None)

    def edit_endpoint(self, endpoint: Endpoint | None) -> EndpointDialog:
        """Open the endpoint editor (non-blocking); a saved endpoint joins the picker."""
        dialog = EndpointDialog(endpoint, save=self.save_endpoint, test=self._test_from_dialog, parent=self)
        self.endpoint_dialog = dialog
        dialog.open()
        return dialog

    def save_endpoint(self, endpoint: Endpoint, api_key: str | None) -> Endpoint:
        """Save through EndpointStore (the key to the keyring only) and select it in the picker."""
        from app.remote.endpoints import KEEP_KEY, EndpointStore

        saved = EndpointStore().save(endpoint, api_key=KEEP_KEY if api_key is None else api_key)
        self._fill_picker(PickerEntry("", endpoint=saved))
        return saved

    def _test_from_dialog(self, endpoint: Endpoint, api_key: str | None) -> None:
        dialog = self.endpoint_dialog

        def done(text: str, ok: bool) -> None:
            if dialog is not None:
                dialog.show_status(text, ok)

        self.test_endpoint(endpoint, api_key, done)

    def test_selected_endpoint(self) -> None:
        """ "Test connection" on the picker's endpoint; the result in the status line."""
        entry = self.selected_entry()
        if entry is None or entry.endpoint is None:
            return
        self._show_progress(None, f"Testing {entry.endpoint.name}…")

        def done(text: str, ok: bool) -> None:
            self.progress_row.setVisible(True)
            self.progress.setVisible(False)
            color = theme.muted_text() if ok else theme.error_color()
            self.progress_label.setStyleSheet(f"color: {color.name()};")
            self.progress_label.setText(text)

        self.test_endpoint(entry.endpoint, None, done)

    def test_endpoint(
        self, endpoint: Endpoint, api_key: str | None, done: Callable[[str, bool], None] | None = None
    ) -> None:
        """Run app.endpoints.test_connection on a worker thread; ``endpoint_tested`` carries the result."""
        from app.errors import QuantDeskError

        def ok(text: str) -> None:
            if done:
                done(text, True)
            self.endpoint_tested.emit(text, True)

        def failed(exc: BaseException) -> None:
            text = exc.user_message if isinstance(exc, QuantDeskError) else f"The test failed: {exc}"
            if done:
                done(text, False)
            self.endpoint_tested.emit(text, False)

        start_worker(test_endpoint, endpoint, api_key, connect={"returned": ok, "errored": failed})

    # -- loading --------------------------------------------------------------------------------------

    def load_selected(self) -> None:
        """Load the picker's model (or connect to its server) on the chat thread."""
        entry = self.selected_entry()
        if entry is None or self.loading:
            return
        if self.streaming:
            self.controller.stop()
        if self.info is None or not _same_target(entry, self._loaded_entry):
            self.chat_layer = ModelSettings()
        self._loaded_entry = entry
        self._start_load(entry)

    _loaded_entry: PickerEntry | None = None

    def _start_load(self, entry: PickerEntry) -> None:
        self.loading = True
        self.info = None
        self._show_progress(0.0, "Loading…" if entry.local else "Connecting…")
        self.model_label.setText(f"<b>{_escape(entry.label)}</b> — loading")
        self.backend_button.setVisible(False)
        self.backend_reason.setText("")
        self.memory_label.setText("")
        conversation = self.state.conversation if self.state and self.state.conversation.messages else None
        if conversation is None and self.current_id is not None:
            conversation = self._load_saved(self.current_id)
        self.controller.load(
            LoadRequest(
                local=entry.local,
                endpoint=entry.endpoint,
                chat_layer=self.chat_layer,
                conversation=conversation,
            )
        )
        self._update_enabled()

    def reload(self) -> None:
        """Load the same model again with the settings now shown."""
        if self._loaded_entry is not None and not self.loading:
            self._start_load(self._loaded_entry)

    def unload(self) -> None:
        """Free the model."""
        if self.streaming:
            self.controller.stop()
        self.controller.unload()

    def _show_progress(self, fraction: float | None, text: str) -> None:
        self.progress_row.setVisible(True)
        self.progress.setVisible(True)
        self.progress_label.setStyleSheet("")
        if fraction is None:
            self.progress.setRange(0, 0)
        else:
            self.progress.setRange(0, 100)
            self.progress.setValue(int(fraction * 100))
        self.progress_label.setText(text)

    def _load_progress(self, fraction: float, text: str) -> None:
        if self.loading:
            self._show_progress(fraction, text)

    def _loaded(self, info: LoadedInfo) -> None:
        self.loading = False
        self.info = info
        self.progress_row.setVisible(False)
        entry = self._loaded_entry
        title = entry.label if entry is not None and entry.local is not None else info.title
        self.model_label.setText(f"<b>{_escape(title)}</b>")
        self.backend_button.setText(f"{info.backend}{' (your choice)' if info.backend_overridden else ''}")
        self.backend_button.setVisible(True)
        self.backend_reason.setText(
            f"Context {info.context_length} tokens. Backend {info.backend}: {info.backend_reason}"
        )
        self.backend_reason.setToolTip(info.backend_reason)
        self._fill_backend_menu(info)
        self.memory_label.setText(self.memory_text(info))
        self.settings_panel.show_settings(info.effective, remote=info.remote)
        self.settings_panel.setEnabled(True)
        if info.profile_warning:
            self.errors.report_message(info.profile_warning, context="reading the model's settings")
        self.model_loaded.emit(info)
        self.load_finished.emit(True)
        self._update_enabled()

    @staticmethod
    def memory_text(info: LoadedInfo) -> str:
        """``124.0 MiB measured · 130.1 MiB estimated``."""
        if info.remote:
            return "Memory: on the server"
        text = f"{format_size(info.memory_bytes)} measured"
        if info.estimate_bytes:
            text += f" · {format_size(info.estimate_bytes)} estimated"
        return text

    def _fill_backend_menu(self, info: LoadedInfo) -> None:
        self.backend_menu.clear()
        auto = self.backend_menu.addAction("Automatic (QuantDesk chooses)")
        auto.triggered.connect(lambda: self.override_backend("auto"))
        for option in info.options:
            text = option.display_name if option.compatible else f"{option.display_name} — {option.reason}"
            action: QAction = self.backend_menu.addAction(text)
            action.setEnabled(option.compatible)
            action.setToolTip(option.reason)
            action.setData(option.name)
            action.triggered.connect(lambda _c=False, n=option.name: self.override_backend(n))
        self.backend_menu.setToolTipsVisible(True)

    def override_backend(self, name: str) -> None:
        """Reload with another backend (this chat's choice)."""
        self.chat_layer = layer_with(self.chat_layer, "backend", None if name == "auto" else name)
        self.reload()

    def _load_failed(self, exc: BaseException) -> None:
        from app.errors import LoadCancelledError, RemoteCodeConsentError
        from app.ui.consent_dialog import ask_and_allow

        self.loading = False
        self.info = None
        self.progress_row.setVisible(False)
        self.model_label.setText("No model loaded")
        if isinstance(exc, LoadCancelledError):
            self.model_label.setText("No model loaded (the load was cancelled)")
        elif not (
            isinstance(exc, RemoteCodeConsentError)
            and ask_and_allow(self, exc, self.reload, lambda e: self.errors.report(e, "loading the model"))
        ):
            self.errors.report(exc, "loading the model")
        self.settings_panel.setEnabled(False)
        self.load_finished.emit(False)
        self._update_enabled()

    def _unloaded(self) -> None:
        self.info = None
        self.model_label.setText("No model loaded")
        self.backend_button.setVisible(False)
        self.backend_reason.setText("")
        self.memory_label.setText("")
        self.template_label.setText("")
        self.budget.set_budget(None)
        self.budget_label.setText("")
        self.settings_panel.setEnabled(False)
        self._update_enabled()

    # -- settings -------------------------------------------------------------------------------------

    def _setting_changed(self, name: str) -> None:
        value = self.settings_panel.value(name)
        if name == "backend" and value == "auto":
            value = None if self.info and self.info.profile_settings.backend is None else "auto"
        self.chat_layer = layer_with(self.chat_layer, name, value)
        if name not in RELOAD_FIELDS:
            self._apply_session_settings()

    def effective(self) -> Any:
        """The effective settings now (defaults < model < profile < this chat)."""
        info = self.info
        assert info is not None
        return effective_settings(info.model_settings, info.profile_settings, self.chat_layer)

    def _apply_session_settings(self) -> None:
        from app.chat.session_setup import chat_settings

        if self.info is None:
            return
        self.controller.apply_settings(chat_settings(self.effective()))

    def save_settings(self) -> None:
        """Store this chat's settings in the model's profile ("Save settings for this model")."""
        info = self.info
        if info is None:
            return
        profile = self.profiles.update(info.profile_repo, info.profile_branch, self.chat_layer)
        self.chat_layer = ModelSettings()
        self.info = replace(info, profile_settings=profile.settings, chat_layer=self.chat_layer)
        self.settings_panel.show_settings(self.effective(), remote=info.remote)

    def reset_settings(self) -> None:
        """Forget the profile's settings and this chat's ("Reset to model defaults")."""
        info = self.info
        if info is None:
            return
        current = self.profiles.load(info.profile_repo, info.profile_branch).profile
        self.profiles.save(Profile(current.repo_id, current.branch, ModelSettings(), current.measured))
        self.chat_layer = ModelSettings()
        self.info = replace(info, profile_settings=ModelSettings(), chat_layer=self.chat_layer)
        self.settings_panel.show_settings(self.effective(), remote=info.remote)
        self._apply_session_settings()

    # -- template -------------------------------------------------------------------------------------

    def _template_chosen(self, index: int) -> None:
        name = str(self.template_box.itemData(index) or "")
        self.chat_layer = layer_with(self.chat_layer, "template", name or None)
        self.controller.set_template(name)

    def set_template_override(self, name: str) -> None:
        """Choose a template override ("" : the detected one)."""
        index = self.template_box.findData(name)
        if index >= 0:
            self.template_box.setCurrentIndex(index)
            self._template_chosen(index)

    def show_preview(self) -> None:
        """Ask the chat thread for the exact prompt; the dialog opens when it arrives."""
        if self.info is not None:
            self.controller.preview(self.input.toPlainText().strip() or None)

    def _preview_ready(self, preview: PromptPreview) -> None:
        dialog = PromptPreviewDialog(preview, self)
        self.preview_dialog = dialog
        dialog.open()
        self.preview_shown.emit(preview)

    # -- chatting -------------------------------------------------------------------------------------

    def send(self, text: str) -> None:
        """Send the input's text."""
        text = text.strip()
        if not text or self.info is None or self.streaming or self.loading:
            return
        self.input.clear()
        self.timing = {"sent": time.perf_counter()}
        self.streaming = True
        self._update_enabled()
        self.controller.send(text)

    def stop(self) -> None:
        """Stop the reply (Esc)."""
        if self.streaming:
            self.controller.stop()

    def regenerate(self) -> None:
        """Replace the last reply."""
        self._begin(self.controller.regenerate)

    def continue_reply(self) -> None:
        """More of the last reply."""
        self._begin(self.controller.continue_reply)

    def edit_message(self, message_id: str, text: str) -> None:
        """Change a message; an edited question is answered again."""
        self._begin(lambda: self.controller.edit(message_id, text))

    def set_pinned(self, message_id: str, pinned: bool) -> None:
        """Pin or unpin a turn."""
        if self.info is not None and not self.streaming:
            self.controller.pin(message_id, pinned)

    def _begin(self, action: Callable[[], None]) -> None:
        if self.info is None or self.streaming or self.loading:
            return
        self.timing = {"sent": time.perf_counter()}
        self.streaming = True
        self._update_enabled()
        action()

    def _message_action(self, name: str, message_id: str) -> None:
        widget = self.message_widgets.get(message_id)
        if name == "copy" and widget is not None:
            widget.copy()
        elif name == "edit" and widget is not None:
            text = self.ask_text("Edit message", "Message:", widget.text, True)
            if text is not None and text.strip():
                self.edit_message(message_id, text)
        elif name == "pin" and widget is not None:
            self.set_pinned(message_id, widget.buttons["pin"].isChecked())
        elif name == "regenerate":
            self.regenerate()
        elif name == "continue":
            self.continue_reply()

    def _stream_started(self, start: StreamStart) -> None:
        self.streaming = True
        self._show_state(start.state, keep_budget=True)
        if start.continuing_id and start.continuing_id in self.message_widgets:
            widget = self.message_widgets[start.continuing_id]
            widget.set_footer(None, None, streaming=True)
        else:
            from app.chat.conversation import Message
            from app.chat.templates import Role

            widget = MessageWidget(Message(Role.ASSISTANT, "", complete=False), interactive=False)
            self._add_widget(widget)
        self._stream_widget = widget
        self._update_enabled()
        self._scroll_to_end()

    def _chunk(self, text: str) -> None:
        now = time.perf_counter()
        self.timing.setdefault("first", now)
        self.timing["last"] = now
        if self._stream_widget is not None:
            bar = self.transcript_scroll.verticalScrollBar()
            at_end = bar.value() >= bar.maximum() - 24
            self._stream_widget.append(text)
            if at_end:
                self._scroll_to_end()

    def _reply_finished(self, outcome: ReplyOutcome) -> None:
        self.timing["done"] = time.perf_counter()
        self.streaming = False
        self._stream_widget = None
        if outcome.message_id and outcome.stats is not None:
            self.stats[outcome.message_id] = outcome.stats
        if outcome.error is not None:
            self.errors.report(outcome.error, "generating the reply")
        self._show_state(outcome.state)
        self.refresh_conversations()
        self._scroll_to_end()
        self.reply_done.emit(outcome)

    def _scroll_to_end(self) -> None:
        QTimer.singleShot(
            0,
            lambda: self.transcript_scroll.verticalScrollBar().setValue(
                self.transcript_scroll.verticalScrollBar().maximum()
            ),
        )

    # -- transcript -----------------------------------------------------------------------------------

    def _show_state(self, state: ChatState, keep_budget: bool = False) -> None:
        budget = (
            state.budget
            if state.budget is not None or not keep_budget
            else (self.state.budget if self.state else None)
        )
        self.state = replace(state, budget=budget)
        conversation = state.conversation
        if self.current_id != conversation.id:
            self.current_id = conversation.id
        self._render(
            conversation, budget.dropped if budget else frozenset(), interactive=self.info is not None
        )
        if budget is not None:
            self.budget.set_budget(budget)
            self.budget_label.setText(f"{budget.used} / {budget.context_length} tokens")
            if budget.error:
                self.budget_label.setText(budget.error)
        if state.template is not None:
            t = state.template
            self.template_label.setText(f"Template: <b>{_escape(t.name)}</b> — {_escape(t.source)}")
            self.template_label.setToolTip(t.detail)
        self._update_enabled()
        self.state_shown.emit()

    def _render(self, conversation: Conversation, dropped: frozenset[str], *, interactive: bool) -> None:
        self._clear_transcript()
        messages = conversation.messages
        for i, message in enumerate(messages):
            widget = MessageWidget(
                message,
                last=i == len(messages) - 1,
                dropped=message.id in dropped,
                stats=self.stats.get(message.id),
                interactive=interactive,
            )
            self._add_widget(widget)
            self.message_widgets[message.id] = widget

    def _add_widget(self, widget: MessageWidget) -> None:
        widget.action.connect(self._message_action)
        self.transcript_layout.insertWidget(self.transcript_layout.count() - 1, widget)

    def _clear_transcript(self) -> None:
        self.message_widgets.clear()
        while self.transcript_layout.count() > 1:
            item = self.transcript_layout.takeAt(0)
            if item is not None and (w := item.widget()) is not None:
                w.deleteLater()

    # -- conversations --------------------------------------------------------------------------------

    def refresh_conversations(self) -> None:
        """Re-list saved conversations (filtered by the search text)."""
        if self._closed:
            return
        wanted = self.search.text().strip().casefold()
        self.conversations.blockSignals(True)
        self.conversations.clear()
        for summary in self.store.list():
            title = summary.title or "Untitled"
            if wanted and wanted not in title.casefold():
                continue
            item = QListWidgetItem(title)
            item.setData(Qt.ItemDataRole.UserRole, summary.id)
            item.setToolTip(f"{summary.message_count} messages · {summary.repo_id or 'no model'}")
            self.conversations.addItem(item)
            if summary.id == self.current_id:
                self.conversations.setCurrentItem(item)
        self.conversations.blockSignals(False)
        self._update_enabled()

    def conversation_ids(self) -> list[str]:
        """Ids in the list, in order."""
        return [
            str(self.conversations.item(i).data(Qt.ItemDataRole.UserRole))
            for i in range(self.conversations.count())
        ]

    def _conversation_selected(self, item: QListWidgetItem | None, _previous: object = None) -> None:
        if item is not None:
            self.open_conversation(str(item.data(Qt.ItemDataRole.UserRole)))

    def _load_saved(self, conversation_id: str) -> Conversation | None:
        from app.errors import QuantDeskError

        if self._closed:
            return None
        try:
            return self.store.load(conversation_id)
        except QuantDeskError as exc:
            self.errors.report(exc, "opening the conversation")
            return None

    def open_conversation(self, conversation_id: str) -> None:
        """Show a saved conversation (and continue it with the loaded model)."""
        if self.streaming:
            self.errors.report_message("Stop the reply before switching conversations.")
            self.refresh_conversations()
            return
        conversation = self._load_saved(conversation_id)
        if conversation is None:
            return
        self.current_id = conversation.id
        if self.info is not None:
            self.controller.open_conversation(conversation)
        else:
            self.state = ChatState(conversation, None, None)
            self._render(conversation, frozenset(), interactive=False)
            self._update_enabled()

    def new_chat(self) -> None:
        """Start a new conversation (Ctrl+N)."""
        if self.streaming:
            return
        self.current_id = None
        self.conversations.clearSelection()
        self.conversations.setCurrentRow(-1)
        if self.info is not None:
            self.controller.open_conversation(None)
        else:
            self.state = None
            self._clear_transcript()
        self.input.setFocus()
        self._update_enabled()

    def rename_conversation(self) -> None:
        """Rename the selected conversation."""
        item = self.conversations.currentItem()
        if item is None:
            return
        title = self.ask_text("Rename conversation", "Title:", item.text(), False)
        if title is not None and title.strip():
            conversation_id = str(item.data(Qt.ItemDataRole.UserRole))
            self.store.rename(conversation_id, title.strip())
            if self.info is not None and conversation_id == self.current_id and self.state is not None:
                renamed = copy.deepcopy(self.state.conversation)
                renamed.title = title.strip()
                self.controller.open_conversation(renamed)
            self.refresh_conversations()

    def delete_conversation(self) -> None:
        """Delete the selected conversation (asks first)."""
        item = self.conversations.currentItem()
        if item is None or self.streaming:
            return
        if not self.confirm(f"Delete the conversation '{item.text()}'?"):
            return
        conversation_id = str(item.data(Qt.ItemDataRole.UserRole))
        self.store.delete(conversation_id)
        if conversation_id == self.current_id:
            self.new_chat()
        self.refresh_conversations()

    def export_conversation(self, kind: str) -> Path | None:
        """Export the selected (or shown) conversation as Markdown ("md") or JSON ("json")."""
        from app.chat.storage import conversation_to_json, conversation_to_markdown

        item = self.conversations.currentItem()
        conversation_id = str(item.data(Qt.ItemDataRole.UserRole)) if item else self.current_id
        if not conversation_id:
            return None
        conversation = self._load_saved(conversation_id)
        if conversation is None:
            return None
        stem = "".join(c if c.isalnum() or c in "-_ " else "_" for c in conversation.title or "conversation")
        filt = "Markdown (*.md)" if kind == "md" else "JSON (*.json)"
        path = self.ask_save_path("Export conversation", filt, f"{stem.strip() or 'conversation'}.{kind}")
        if path is None:
            return None
        text = (
            conversation_to_markdown(conversation)
            if kind == "md"
            else json.dumps(conversation_to_json(conversation), indent=2, ensure_ascii=False)
        )
        try:
            path.write_text(text, encoding="utf-8")
        except OSError as exc:
            self.errors.report(exc, "exporting the conversation")
            return None
        return path

    def import_conversation(self) -> str | None:
        """Import a conversation exported as JSON; returns its id."""
        from app.errors import ChatImportError, QuantDeskError

        path = self.ask_open_path("Import conversation", "JSON (*.json)")
        if path is None:
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise ChatImportError(f"{path.name} does not hold an exported conversation.", "")
            conversation = self.store.import_json(data)
        except (OSError, ValueError, QuantDeskError) as exc:
            if isinstance(exc, ValueError) and not isinstance(exc, QuantDeskError):
                exc = ChatImportError(f"{path.name} is not valid JSON ({exc}).", "Choose an exported file.")
            self.errors.report(exc, "importing a conversation")
            return None
        self.current_id = conversation.id
        self.refresh_conversations()
        self.open_conversation(conversation.id)
        return conversation.id

    # -- state ----------------------------------------------------------------------------------------

    def _update_enabled(self) -> None:
        loaded = self.info is not None
        entry = self.selected_entry()
        self.load_button.setEnabled(entry is not None and not self.loading)
        self.load_button.setText("Connect" if entry is not None and entry.endpoint else "Load")
        self.cancel_button.setVisible(self.loading)
        self.unload_button.setEnabled(loaded and not self.loading)
        is_endpoint = entry is not None and entry.endpoint is not None
        self.edit_endpoint_action.setEnabled(is_endpoint)
        self.test_action.setEnabled(is_endpoint)
        can_type = loaded and not self.loading
        self.input.setEnabled(can_type)
        self.send_button.setEnabled(can_type and not self.streaming)
        self.stop_button.setEnabled(self.streaming)
        self.preview_button.setEnabled(loaded and not self.streaming)
        self.template_box.setEnabled(loaded and not self.streaming)
        self.conversations.setEnabled(not self.streaming)
        for b in (self.new_button, self.delete_button, self.import_button):
            b.setEnabled(not self.streaming)
        self.rename_button.setEnabled(self.conversations.currentItem() is not None)
        if self.loading:
            reason = "Loading the model…"
        elif not loaded:
            reason = (
                NO_MODEL_REASON
                if self.picker.count()
                else ("No local model yet: download one on the Models page, or open a model folder (More).")
            )
        elif self.streaming:
            reason = "Generating… Esc stops the reply and keeps what was written."
        else:
            reason = ""
        self.reason_label.setText(reason)
        self.reason_label.setVisible(bool(reason))
        self.input.setPlaceholderText(
            "Message (Enter sends, Shift+Enter for a new line)" if can_type else (reason or NO_MODEL_REASON)
        )

    def shutdown(self) -> None:
        """Stop a reply (its partial text is saved), free the model, end the chat thread."""
        if self._closed:
            return
        self._closed = True  # replies still queued from the chat thread no longer touch the database
        if self.controller.shutdown() and self._owns_store:
            self.store.close()

    _closed = False


def _ask_text(title: str, label: str, text: str, multiline: bool) -> str | None:
    if multiline:
        value, ok = QInputDialog.getMultiLineText(None, title, label, text)
    else:
        value, ok = QInputDialog.getText(None, title, label, QLineEdit.EchoMode.Normal, text)
    return value if ok else None


def _path(text: str) -> Path | None:
    return Path(text) if text else None


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _same(a: Any, b: Any) -> bool:
    if not isinstance(a, PickerEntry) or not isinstance(b, PickerEntry):
        return False
    if a.local is not None and b.local is not None:
        return Path(a.local.model_dir) == Path(b.local.model_dir)
    if a.endpoint is not None and b.endpoint is not None:
        return a.endpoint.name.casefold() == b.endpoint.name.casefold()
    return False


def _same_target(a: PickerEntry | None, b: PickerEntry | None) -> bool:
    return a is not None and b is not None and _same(a, b)
