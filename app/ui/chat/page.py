"""The Chat page: a thin composition of components wired through signals.

Left, :class:`ConversationList`; middle, :class:`ModelBar`, :class:`TemplateBar`, :class:`BudgetBar`,
the :class:`Transcript`, a slot for extra panels and the :class:`Composer`; right, the
:class:`SettingsPanel`. Every model operation goes through :class:`app.ui.chat.controller.ChatController`
(the chat thread); the model side of the page (loading, settings, templates) is :class:`ModelSide`,
the conversation side (list, transcript, versions, export) is :class:`ConversationSide`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QFileDialog,
    QInputDialog,
    QLineEdit,
    QMessageBox,
    QScrollArea,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from app.chat.profiles import ModelSettings, ProfileStore
from app.ui.chat.budget_bar import BudgetBar
from app.ui.chat.composer import Composer
from app.ui.chat.controller import ChatController
from app.ui.chat.conversation_list import ConversationList
from app.ui.chat.conversations import ConversationSide
from app.ui.chat.endpoint_dialog import EndpointActions
from app.ui.chat.model_bar import ModelBar, PickerEntry
from app.ui.chat.model_side import ModelSide
from app.ui.chat.settings_panel import SettingsPanel
from app.ui.chat.template_bar import PromptPreviewDialog, TemplateBar
from app.ui.chat.transcript import Transcript
from app.ui.chat.worker_data import ChatState, LoadedInfo
from app.ui.serve_panel import ServePanel

if TYPE_CHECKING:
    from app.chat.storage import ChatStore
    from app.ui.error_center import ErrorCenter
    from app.ui.settings import UiSettings

NO_MODEL_REASON = "Load a model above to chat."
SPLITTER_KEY = "chat/splitter"


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
        warning = getattr(store, "warning", None)
        if warning:
            errors.report_message(str(warning), context="opening saved conversations")
        self.profiles = ProfileStore()
        self.controller = ChatController(store, self)

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
        self.ask_choice: Callable[[str, str, list[str]], int | None] = self._ask_choice
        self.ask_folder: Callable[[], Path | None] = lambda: _path(
            QFileDialog.getExistingDirectory(self, "Open a model folder")
        )

        self.info: LoadedInfo | None = None
        self.state: ChatState | None = None
        self.loading = False
        self.streaming = False
        self.chat_layer = ModelSettings()
        self.preview_dialog: PromptPreviewDialog | None = None
        # What the GUI saw of the last reply (benchmarks/gui_latency.py): send, first chunk, end.
        self.timing: dict[str, float] = {}
        self.closed = False

        self.conversation_list = ConversationList()
        self.model_bar = ModelBar()
        self.template_bar = TemplateBar()
        self.budget = BudgetBar()
        self.transcript = Transcript()
        self.composer = Composer()
        self.settings_panel = SettingsPanel()
        self.endpoints = EndpointActions(self)
        self._build()
        self.serve_panel = ServePanel()  # "Serve this model": the loaded local model for other apps
        self.add_panel(self.serve_panel)
        self.model_side = ModelSide(self)
        self.conversation_side = ConversationSide(self)
        self._wire()
        self.conversation_side.refresh()
        self.conversation_side.reopen_last()
        self.update_enabled()

    # -- layout ---------------------------------------------------------------------------------------

    def _build(self) -> None:
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.setObjectName("chat-splitter")
        outer.addWidget(self.splitter)
        self.splitter.addWidget(self.conversation_list)
        middle = QWidget()
        column = QVBoxLayout(middle)
        column.setContentsMargins(4, 0, 4, 0)
        column.setSpacing(6)
        for part in (self.model_bar, self.template_bar, self.budget):
            column.addWidget(part)
        column.addWidget(self.transcript, 1)
        # Extra panels (e.g. "Serve this model") go here, between the transcript and the composer.
        self.panels = QVBoxLayout()
        self.panels.setContentsMargins(0, 0, 0, 0)
        column.addLayout(self.panels)
        column.addWidget(self.composer)
        self.splitter.addWidget(middle)
        side = QScrollArea()
        side.setWidgetResizable(True)
        side.setWidget(self.settings_panel)
        side.setMinimumWidth(300)
        self.splitter.addWidget(side)
        for i, stretch in enumerate((0, 1, 0)):
            self.splitter.setStretchFactor(i, stretch)
        self.splitter.setSizes([220, 780, 330])
        saved = self.settings.bytes_value(SPLITTER_KEY)
        if saved is not None:
            self.splitter.restoreState(saved)
        self.splitter.splitterMoved.connect(lambda _p, _i: self.save_state())
        for keys, slot in (("Ctrl+N", self.new_chat), ("Esc", self.stop)):
            shortcut = QShortcut(QKeySequence(keys), self)
            shortcut.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            shortcut.activated.connect(slot)

    def add_panel(self, widget: QWidget) -> None:
        """Add an extra panel under the transcript (another feature's widget)."""
        self.panels.addWidget(widget)

    def _wire(self) -> None:
        worker = self.controller.worker
        worker.failed.connect(lambda exc, what: self.errors.report(exc, what))
        self.composer.submitted.connect(self.send)
        self.composer.stop_requested.connect(self.stop)
        self.composer.new_chat_requested.connect(self.new_chat)
        self.endpoints.tested.connect(self.endpoint_tested)
        self.model_loaded.connect(lambda info: self.serve_panel.set_model(info.served, info.gate))
        worker.unloaded.connect(lambda: self.serve_panel.set_model(None, None))

    # -- the shared state -------------------------------------------------------------------------------

    @property
    def input(self) -> QWidget:
        """The message box."""
        return self.composer.input

    @property
    def current_id(self) -> str | None:
        """The conversation shown (None: a new one)."""
        return self.conversation_side.current_id

    def show_state(self, state: ChatState, keep_budget: bool = False) -> None:
        """A snapshot from the chat thread: transcript, budget, template."""
        self.conversation_side.show_state(state, keep_budget=keep_budget)
        self.model_side.show_template(state)
        self.update_enabled()
        self.state_shown.emit()

    def update_enabled(self) -> None:
        """Enable what applies now, and say why typing is not possible."""
        loaded = self.info is not None
        self.model_bar.set_state(loading=self.loading, loaded=loaded)
        self.template_bar.set_usable(loaded and not self.streaming)
        self.conversation_list.set_streaming(self.streaming)
        can_type = loaded and not self.loading
        if self.loading:
            reason = "Loading the model…"
        elif not loaded:
            reason = (
                NO_MODEL_REASON
                if self.model_bar.has_entries()
                else "No local model yet: download one on the Models page, or open a model folder (More)."
            )
        elif self.streaming:
            reason = "Generating… Esc stops the reply and keeps what was written."
        else:
            reason = ""
        self.composer.set_state(can_type=can_type, streaming=self.streaming, reason=reason)

    # -- chatting -------------------------------------------------------------------------------------

    def send(self, text: str) -> None:
        """Send the input's text."""
        text = text.strip()
        if not text or self.info is None or self.streaming or self.loading:
            return
        self.composer.clear()
        self._begin(lambda: self.controller.send(text))

    def stop(self) -> None:
        """Stop the reply (Esc)."""
        if self.streaming:
            self.controller.stop()

    def regenerate(self) -> None:
        """A new version of the last reply (the old one stays)."""
        self._begin(self.controller.regenerate)

    def continue_reply(self) -> None:
        """More of the last reply."""
        self._begin(self.controller.continue_reply)

    def edit_message(self, message_id: str, text: str) -> None:
        """A new version of a message (the old one and what followed it stay as a branch)."""
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
        action()  # the chat thread starts on the prompt while this thread updates the buttons
        self.update_enabled()

    # -- delegated (kept on the page: the window, tests and benchmarks use them) ---------------------

    def new_chat(self) -> None:
        """Start a new conversation (Ctrl+N)."""
        self.conversation_side.new_chat()

    def open_conversation(self, conversation_id: str) -> None:
        """Show a saved conversation (and continue it with the loaded model)."""
        self.conversation_side.open(conversation_id)

    def conversation_ids(self) -> list[str]:
        """Saved conversations listed, in order."""
        return self.conversation_list.ids()

    def import_conversation(self) -> str | None:
        """Import a JSON export; returns its id."""
        return self.conversation_side.import_conversation()

    def export_conversation(self, kind: str) -> Path | None:
        """Export the selected (or shown) conversation: "md", "md-all" (every branch) or "json"."""
        return self.conversation_side.export_conversation(kind)

    def rename_conversation(self) -> None:
        """Rename the selected conversation."""
        self.conversation_side.rename(self.conversation_list.current_id())

    def delete_conversation(self) -> None:
        """Delete the selected conversation (asks first)."""
        self.conversation_side.delete(self.conversation_list.current_id())

    def refresh_models(self) -> None:
        """Re-list local models (worker) and saved endpoints."""
        self.model_side.refresh_models()

    def add_model_folder(self, path: Path, label: str | None = None) -> PickerEntry:
        """Offer a model folder in the picker (and select it)."""
        return self.model_side.add_model_folder(path, label)

    def open_local_model(self, model: object) -> None:
        """ "Chat with this model" from the Local models page: select it and load it."""
        self.model_side.open_local_model(model)

    def selected_entry(self) -> PickerEntry | None:
        """The picker's current entry."""
        return self.model_bar.selected_entry()

    def load_selected(self) -> None:
        """Load the picker's model (or connect to its server)."""
        self.model_side.load_selected()

    def unload(self) -> None:
        """Free the model."""
        self.model_side.unload()

    def edit_endpoint(self, endpoint: object) -> object:
        """Open the endpoint editor (non-blocking)."""
        return self.endpoints.edit(endpoint)  # type: ignore[arg-type]

    def test_selected_endpoint(self) -> None:
        """ "Test connection" on the picker's endpoint."""
        self.model_side.test_selected_endpoint()

    def set_template_override(self, name: str) -> None:
        """Choose a template override ("" : the detected one)."""
        self.template_bar.choose(name)

    def show_preview(self) -> None:
        """Ask the chat thread for the exact prompt; the dialog opens when it arrives."""
        self.model_side.show_preview()

    def _ask_choice(self, title: str, text: str, choices: list[str]) -> int | None:
        box = QMessageBox(QMessageBox.Icon.Question, title, text, parent=self)
        buttons = [box.addButton(c, QMessageBox.ButtonRole.DestructiveRole) for c in choices]
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.exec()
        clicked = box.clickedButton()
        return next((i for i, b in enumerate(buttons) if b is clicked), None)

    # -- persistence and shutdown ---------------------------------------------------------------------

    def save_state(self) -> None:
        """Remember the splitter (the last conversation is remembered as it is opened)."""
        self.settings.set_bytes_value(SPLITTER_KEY, self.splitter.saveState())

    def shutdown(self) -> None:
        """Stop a reply (its partial text is saved), free the model, end the chat thread."""
        if self.closed:
            return
        self.save_state()
        self.serve_panel.shutdown()  # other apps' requests end before the model goes
        self.closed = True  # replies still queued from the chat thread no longer touch the database
        if self.controller.shutdown() and self._owns_store:
            self.store.close()


def _ask_text(title: str, label: str, text: str, multiline: bool) -> str | None:
    if multiline:
        value, ok = QInputDialog.getMultiLineText(None, title, label, text)
    else:
        value, ok = QInputDialog.getText(None, title, label, QLineEdit.EchoMode.Normal, text)
    return value if ok else None


def _path(text: str) -> Path | None:
    return Path(text) if text else None
