"""The GUI thread's handle on the chat thread (gpt4all's chatllm shape, GUI side).

:class:`ChatController` owns the ``quantdesk-chat`` QThread and the :class:`ChatWorker` moved onto it.
Each request is a queued signal connected to a worker slot, so it runs on the chat thread in the order
sent; results come back as the worker's own signals (``controller.worker.loaded``, ``.chunk``, ...).
Besides the queued requests, the controller calls the worker directly only to set or clear a
threading.Event, which is safe from any thread: :meth:`ChatController.stop`,
:meth:`ChatController.cancel_load`, and ``worker.arm()`` before each reply request (so a Stop pressed
while that request is still queued is not lost). The thread starts with the first request, so a window
that never chats never runs it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, QThread, Signal

from app.ui.chat.worker import ChatWorker
from app.ui.chat.worker_data import LoadRequest

if TYPE_CHECKING:
    from app.chat.conversation import Conversation
    from app.chat.engine import ChatSettings
    from app.chat.storage import ChatStore


class ChatController(QObject):
    """The GUI thread's handle on the chat thread: requests out as queued signals, results in."""

    _load = Signal(object)
    _unload = Signal()
    _send = Signal(str)
    _regenerate = Signal()
    _continue = Signal()
    _edit = Signal(str, str)
    _pin = Signal(str, bool)
    _open = Signal(object)
    _settings = Signal(object)
    _template = Signal(str)
    _preview = Signal(object)
    _select_version = Signal(str)
    _delete = Signal(str, bool)

    def __init__(self, store: ChatStore, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.chat_thread = QThread()
        self.chat_thread.setObjectName("quantdesk-chat")
        self.worker = ChatWorker(store)
        self.worker.moveToThread(self.chat_thread)
        for signal, slot in (
            (self._load, self.worker.load),
            (self._unload, self.worker.unload),
            (self._send, self.worker.send),
            (self._regenerate, self.worker.regenerate),
            (self._continue, self.worker.continue_reply),
            (self._edit, self.worker.edit),
            (self._pin, self.worker.pin),
            (self._open, self.worker.open_conversation),
            (self._settings, self.worker.apply_settings),
            (self._template, self.worker.set_template),
            (self._preview, self.worker.preview),
            (self._select_version, self.worker.select_version),
            (self._delete, self.worker.delete_message),
        ):
            signal.connect(slot)
        self._stopped = False

    def _started(self) -> ChatController:
        # The thread starts with the first request: a window that never chats never runs it.
        if not self.chat_thread.isRunning() and not self._stopped:
            self.chat_thread.start()
        return self

    def load(self, request: LoadRequest) -> None:
        """Load a model (replacing the loaded one)."""
        self._started()._load.emit(request)

    def unload(self) -> None:
        """Free the model."""
        self._started()._unload.emit()

    def send(self, text: str) -> None:
        """Send a message."""
        self.worker.arm()
        self._started()._send.emit(text)

    def regenerate(self) -> None:
        """Regenerate the last reply."""
        self.worker.arm()
        self._started()._regenerate.emit()

    def continue_reply(self) -> None:
        """Continue the last reply."""
        self.worker.arm()
        self._started()._continue.emit()

    def edit(self, message_id: str, text: str) -> None:
        """Edit a message."""
        self.worker.arm()
        self._started()._edit.emit(message_id, text)

    def pin(self, message_id: str, pinned: bool) -> None:
        """Pin or unpin a turn."""
        self._started()._pin.emit(message_id, pinned)

    def open_conversation(self, conversation: Conversation | None) -> None:
        """Continue a conversation (None: a new one) with the loaded model."""
        self._started()._open.emit(conversation)

    def apply_settings(self, settings: ChatSettings) -> None:
        """New sampler / system prompt."""
        self._started()._settings.emit(settings)

    def set_template(self, name: str) -> None:
        """Override the template ("" for the detected one)."""
        self._started()._template.emit(name)

    def preview(self, pending: str | None = None) -> None:
        """Ask for the exact prompt (answered by ``worker.preview_ready``)."""
        self._started()._preview.emit(pending)

    def select_version(self, message_id: str) -> None:
        """Make a version of a message active."""
        self._started()._select_version.emit(message_id)

    def delete_message(self, message_id: str, branch: bool) -> None:
        """Delete a message (``branch``: with everything after it); ask the user first."""
        self._started()._delete.emit(message_id, branch)

    def stop(self) -> None:
        """Stop the streaming reply (direct: sets an event)."""
        self.worker.stop()

    def cancel_load(self) -> None:
        """Cancel a load (direct: sets an event)."""
        self.worker.cancel_load()

    def shutdown(self, timeout_ms: int = 30_000) -> bool:
        """Stop generation, free the model on its thread, end the thread (the partial reply is saved by
        the engine as the stream ends). Returns whether the thread ended in time."""
        if self._stopped:
            return True
        self._stopped = True
        self.worker.cancel_load()
        self.worker.stop()
        if not self.chat_thread.isRunning():
            return True
        self._unload.emit()
        self.chat_thread.quit()
        return bool(self.chat_thread.wait(timeout_ms))
