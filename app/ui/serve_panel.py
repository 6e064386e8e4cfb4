"""The "Serve this model" panel: offer the chat's loaded model to other apps as an OpenAI-compatible API.

A standalone widget the Chat page mounts (it only needs :meth:`ServePanel.set_model` with the loaded
model and the :class:`~app.serve.gate.ModelGate` its own chat goes through). A toggle starts and stops
:class:`~app.serve.runner.ServerRunner` on a worker thread, so the window never waits on a socket; the
base URL is shown with a Copy button; a counter shows the API requests served and an indicator shows
when an API request is generating (or waiting for the chat to finish). The window serves on 127.0.0.1
only: serving to other machines needs a key, which ``quantdesk serve --host`` handles.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QCheckBox,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.errors import QuantDeskError
from app.serve.gate import GateState, ModelGate, Owner
from app.ui.workers import start_worker

if TYPE_CHECKING:
    from app.serve.runner import ServerRunner
    from app.serve.service import ServedModel

DEFAULT_PORT = 8000
IDLE_TEXT = "No API request right now."
GENERATING_TEXT = "An API request is generating."


def activity_text(state: GateState) -> str:
    """The indicator's words for a gate state."""
    if state.generating is Owner.API:
        text = GENERATING_TEXT
    elif state.generating is Owner.GUI and state.waiting:
        text = "The chat is replying; API requests wait for it."
    else:
        text = IDLE_TEXT
    if state.waiting:
        text += f" {state.waiting} waiting."
    return text


class ServePanel(QFrame):
    """Toggle, URL, request counter and activity indicator of the local server."""

    serving_changed = Signal(bool)
    activity_changed = Signal(str)  # the indicator's new text
    _gate_state = Signal(object)  # GateState, emitted from whichever thread changed the gate

    def __init__(self, parent: QWidget | None = None, *, port: int = DEFAULT_PORT) -> None:
        super().__init__(parent)
        self.setObjectName("servePanel")
        self.port = port
        self._served: ServedModel | None = None
        self._gate: ModelGate | None = None
        self._unsubscribe: Any = None
        self._runner: ServerRunner | None = None
        self._busy = False  # a start or stop is running on a worker

        self.toggle = QCheckBox("Serve this model to other apps (OpenAI-compatible API)")
        self.toggle.setEnabled(False)
        self.toggle.toggled.connect(self._toggled)
        self.url = QLineEdit()
        self.url.setReadOnly(True)
        self.url.setPlaceholderText("Not serving")
        self.copy = QPushButton("Copy")
        self.copy.setEnabled(False)
        self.copy.clicked.connect(lambda: QGuiApplication.clipboard().setText(self.url.text()))
        self.requests = QLabel("0 API requests")
        self.activity = QLabel(IDLE_TEXT)
        self.status = QLabel("Load a model to serve it.")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        url_row = QHBoxLayout()
        url_row.addWidget(self.url, 1)
        url_row.addWidget(self.copy)
        info_row = QHBoxLayout()
        info_row.addWidget(self.requests)
        info_row.addStretch(1)
        info_row.addWidget(self.activity)
        layout = QVBoxLayout(self)
        layout.addWidget(self.toggle)
        layout.addLayout(url_row)
        layout.addLayout(info_row)
        layout.addWidget(self.status)
        self._gate_state.connect(self._show_gate)  # queued onto the GUI thread when emitted elsewhere
        self.destroyed.connect(lambda *_: self._forget_gate())

    # -- what the Chat page calls ------------------------------------------------------------------

    @property
    def serving(self) -> bool:
        """Whether the server is up."""
        return self._runner is not None and self._runner.running

    def set_model(self, served: ServedModel | None, gate: ModelGate | None) -> None:
        """The model to serve (None: no model loaded; a running server is stopped) and the gate the chat
        shares it through."""
        if self.serving and served is not self._served:
            self.toggle.setChecked(False)  # stops the server for the old model
        self._served = served
        self._forget_gate()
        self._gate = gate
        if gate is not None:
            self._unsubscribe = gate.subscribe(self._gate_state.emit)
            self._show_gate(gate.state())
        self.toggle.setEnabled(served is not None and gate is not None and not self._busy)
        if served is None:
            self.status.setText("Load a model to serve it.")
        elif not self.serving:
            self.status.setText(f"Serve '{served.model_id}' at http://127.0.0.1:{self.port or 'any port'}.")

    def shutdown(self) -> None:
        """Stop the server now (the window is closing); blocks for up to a few seconds."""
        if self._runner is not None:
            self._runner.stop()
            self._runner = None
        self._forget_gate()

    # -- internals ---------------------------------------------------------------------------------

    def _forget_gate(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def _show_gate(self, state: GateState) -> None:
        self.requests.setText(f"{state.api_requests} API request{'s' if state.api_requests != 1 else ''}")
        text = activity_text(state)
        if text != self.activity.text():
            self.activity.setText(text)
            self.activity_changed.emit(text)

    def _toggled(self, on: bool) -> None:
        if self._busy:
            return
        if on and not self.serving:
            self._start()
        elif not on and self.serving:
            self._stop()

    def _set_busy(self, busy: bool, message: str) -> None:
        self._busy = busy
        self.toggle.setEnabled(not busy and self._served is not None)
        self.status.setText(message)

    def _start(self) -> None:
        from app.backends.cpu_threads import leave_a_core_for_the_window
        from app.serve.app import ServeState
        from app.serve.runner import DEFAULT_HOST, ServerRunner

        if self._served is None or self._gate is None:
            return
        state = ServeState(self._served.model_id, self._gate)
        state.set_loaded(replace(self._served, thread_setup=leave_a_core_for_the_window))
        runner = ServerRunner(state, DEFAULT_HOST, self.port)
        self._set_busy(True, "Starting the server...")
        start_worker(
            runner.start,
            connect={"returned": lambda url: self._started(runner, url), "errored": self._failed},
        )

    def _started(self, runner: ServerRunner, url: str) -> None:
        self._runner = runner
        self.url.setText(url)
        self.copy.setEnabled(True)
        served = self._served.model_id if self._served is not None else ""
        self._set_busy(False, f"Serving '{served}'. Point any OpenAI client at this URL (any API key).")
        self.serving_changed.emit(True)

    def _failed(self, exc: BaseException) -> None:
        message = (
            exc.user_message if isinstance(exc, QuantDeskError) else f"The server failed to start: {exc}"
        )
        self._set_busy(False, message)
        self.toggle.blockSignals(True)
        self.toggle.setChecked(False)
        self.toggle.blockSignals(False)

    def _stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is None:
            return
        self._set_busy(True, "Stopping the server...")
        start_worker(runner.stop, connect={"finished": self._stopped})

    def _stopped(self) -> None:
        self.url.clear()
        self.copy.setEnabled(False)
        self._set_busy(False, "Stopped. Other apps can no longer reach the model.")
        self.serving_changed.emit(False)
