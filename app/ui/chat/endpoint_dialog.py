"""Saved OpenAI-compatible endpoints: the editor dialog (the API key goes to the OS keyring only), and
the actions around it: save, and "Test connection" on a worker thread."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QSpinBox,
    QWidget,
)

from app.ui import theme
from app.ui.workers import start_worker

if TYPE_CHECKING:
    from app.remote.endpoints import Endpoint


def test_endpoint(endpoint: Endpoint, api_key: str | None) -> str:
    """Worker body: "Test connection" (``api_key`` None: the stored key)."""
    from app.remote.endpoints import KEEP_KEY, test_connection

    return test_connection(endpoint, KEEP_KEY if api_key is None else api_key).message


test_endpoint.__test__ = False  # type: ignore[attr-defined]


class EndpointActions(QObject):
    """Open the editor, save an endpoint, test one; results come back as signals."""

    saved = Signal(object)  # Endpoint
    tested = Signal(str, bool)  # message, ok

    def __init__(self, parent_widget: QWidget) -> None:
        super().__init__(parent_widget)
        self._parent_widget = parent_widget
        self.dialog: EndpointDialog | None = None

    def edit(self, endpoint: Endpoint | None) -> EndpointDialog:
        """Open the editor (non-blocking); a saved endpoint is announced by ``saved``."""
        dialog = EndpointDialog(
            endpoint, save=self.save, test=self._test_from_dialog, parent=self._parent_widget
        )
        self.dialog = dialog
        dialog.open()
        return dialog

    def save(self, endpoint: Endpoint, api_key: str | None) -> Endpoint:
        """Save through EndpointStore (the key to the keyring only)."""
        from app.remote.endpoints import KEEP_KEY, EndpointStore

        saved = EndpointStore().save(endpoint, api_key=KEEP_KEY if api_key is None else api_key)
        self.saved.emit(saved)
        return saved

    def _test_from_dialog(self, endpoint: Endpoint, api_key: str | None) -> None:
        dialog = self.dialog

        def done(text: str, ok: bool) -> None:
            if dialog is not None:
                dialog.show_status(text, ok)

        self.test(endpoint, api_key, done)

    def test(
        self, endpoint: Endpoint, api_key: str | None, done: Callable[[str, bool], None] | None = None
    ) -> None:
        """Run app.remote.endpoints.test_connection on a worker thread; ``tested`` carries the result."""
        from app.errors import QuantDeskError

        def ok(text: str) -> None:
            if done:
                done(text, True)
            self.tested.emit(text, True)

        def failed(exc: BaseException) -> None:
            text = exc.user_message if isinstance(exc, QuantDeskError) else f"The test failed: {exc}"
            if done:
                done(text, False)
            self.tested.emit(text, False)

        start_worker(test_endpoint, endpoint, api_key, connect={"returned": ok, "errored": failed})


class EndpointDialog(QDialog):
    """Add or edit a saved OpenAI-compatible endpoint; the API key goes to the OS keyring only."""

    def __init__(
        self,
        endpoint: Endpoint | None = None,
        *,
        save: Callable[[Endpoint, str | None], Endpoint] | None = None,
        test: Callable[[Endpoint, str | None], None] | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        from app.chat.templates import template_names

        self.setWindowTitle("Edit endpoint" if endpoint else "New endpoint")
        self._save = save
        self._test = test
        self.saved: Endpoint | None = None
        form = QFormLayout(self)
        self.name = QLineEdit(endpoint.name if endpoint else "")
        self.base_url = QLineEdit(endpoint.base_url if endpoint else "")
        self.base_url.setPlaceholderText("http://gpu-box:8000/v1")
        self.model = QLineEdit((endpoint.model or "") if endpoint else "")
        self.model.setPlaceholderText("the server's only model")
        self.api_key = QLineEdit()
        self.api_key.setEchoMode(QLineEdit.EchoMode.Password)
        self.api_key.setPlaceholderText("unchanged" if endpoint else "none")
        self.clear_key = QCheckBox("Remove the stored key")
        self.mode = QComboBox()
        self.mode.addItem("The server applies the model's template", "server")
        self.mode.addItem("QuantDesk renders the prompt", "quantdesk")
        if endpoint is not None:
            self.mode.setCurrentIndex(self.mode.findData(endpoint.template_mode.value))
        self.template = QComboBox()
        self.template.addItems(template_names())
        self.template.setCurrentText((endpoint.template if endpoint else None) or "ChatML")
        self.context = QSpinBox()
        self.context.setRange(0, 10_000_000)
        self.context.setSpecialValueText("as the server says")
        self.context.setValue((endpoint.context_length or 0) if endpoint else 0)
        form.addRow("Name", self.name)
        form.addRow("Base URL", self.base_url)
        form.addRow("Model id", self.model)
        form.addRow("API key", self.api_key)
        form.addRow("", self.clear_key)
        form.addRow("Prompt", self.mode)
        form.addRow("QuantDesk template", self.template)
        form.addRow("Context length", self.context)
        self.status = QLabel()
        self.status.setWordWrap(True)
        form.addRow(self.status)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel
        )
        self.test_button = buttons.addButton("Test connection", QDialogButtonBox.ButtonRole.ActionRole)
        self.test_button.clicked.connect(self._run_test)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)
        self._original = endpoint

    def endpoint(self) -> Endpoint:
        """The endpoint as filled in (unchecked)."""
        from dataclasses import replace

        from app.remote.endpoints import Endpoint, TemplateMode

        base = self._original or Endpoint(name="", base_url="")
        return replace(
            base,
            name=self.name.text().strip(),
            base_url=self.base_url.text().strip(),
            model=self.model.text().strip() or None,
            template_mode=TemplateMode(self.mode.currentData()),
            template=self.template.currentText() or None,
            context_length=self.context.value() or None,
        )

    def api_key_value(self) -> str | None:
        """The key typed (None: keep the stored one unless "remove" is ticked, then "")."""
        typed = self.api_key.text().strip()
        if typed:
            return typed
        return "" if self.clear_key.isChecked() else None

    def _run_test(self) -> None:
        if self._test is not None:
            self.status.setText("Testing…")
            self._test(self.endpoint(), self.api_key_value())

    def show_status(self, text: str, ok: bool) -> None:
        """The result of a test."""
        color = theme.muted_text() if ok else theme.error_color()
        self.status.setStyleSheet(f"color: {color.name()};")
        self.status.setText(text)

    def accept(self) -> None:
        if self._save is not None:
            from app.errors import QuantDeskError

            try:
                self.saved = self._save(self.endpoint(), self.api_key_value())
            except QuantDeskError as exc:
                self.show_status(exc.user_message, False)
                return
        super().accept()
