"""The Settings page: models folder, Hugging Face token (OS keyring, with a whoami test), parallel
downloads, connections per file, auto-resume and the default context length. Keyring and network
calls run in workers."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from app.errors import QuantDeskError
from app.paths import app_paths
from app.ui import theme
from app.ui.error_center import ErrorCenter
from app.ui.settings import MAX_DOWNLOAD_CONNECTIONS, UiSettings, settings_path
from app.ui.workers import start_worker

MAX_CONTEXT = 1 << 20


def token_status() -> str:
    """Worker body: where the token comes from, in words (reads the keyring)."""
    from app.auth import token_status as status

    return status()


def save_token(token: str) -> str:
    """Worker body: store the token in the OS keyring, or in memory until exit when there is none."""
    from app.auth import store_token
    from app.auth import token_status as status

    store_token(token)
    return status()


def remove_token() -> str:
    """Worker body: forget the token (keyring and memory)."""
    from app.auth import delete_token
    from app.auth import token_status as status

    try:
        delete_token()
    except Exception as exc:
        raise QuantDeskError("The token could not be removed from the OS keyring.", detail=str(exc)) from exc
    return status()


def check_token(typed: str) -> str:
    """Worker body: the Hub user name of the typed token, else of the stored one."""
    from app.auth import read_token, whoami

    token = typed.strip() or read_token()
    if not token:
        raise QuantDeskError("There is no token to test.", "Paste one from huggingface.co/settings/tokens.")
    return whoami(token)


class SettingsPage(QWidget):
    """Preferences, saved as soon as they change."""

    parallel_changed = Signal(int)
    models_dir_changed = Signal(str)
    default_context_changed = Signal(int)
    token_tested = Signal(str)  # the user name, or "" on failure

    def __init__(self, settings: UiSettings, errors: ErrorCenter, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.settings = settings
        self.errors = errors
        layout = QVBoxLayout(self)
        layout.setContentsMargins(12, 10, 12, 6)
        title = QLabel("Settings")
        font = title.font()
        font.setPointSizeF(font.pointSizeF() * 1.3)
        font.setBold(True)
        title.setFont(font)
        layout.addWidget(title)

        downloads = QGroupBox("Downloads")
        form = QFormLayout(downloads)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.ExpandingFieldsGrow)
        folder_row = QHBoxLayout()
        self.models_dir = QLineEdit(str(settings.models_dir))
        self.models_dir.editingFinished.connect(self._models_dir_edited)
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        folder_row.addWidget(self.models_dir, 1)
        folder_row.addWidget(browse)
        form.addRow("Models folder", folder_row)
        self.parallel = QSpinBox()
        self.parallel.setRange(1, 8)
        self.parallel.setValue(settings.parallel_downloads)
        self.parallel.setMaximumWidth(80)
        self.parallel.setToolTip("How many branch downloads run at the same time")
        self.parallel.valueChanged.connect(self._parallel_edited)
        form.addRow("Parallel downloads", self.parallel)
        self.connections = QSpinBox()
        self.connections.setRange(1, MAX_DOWNLOAD_CONNECTIONS)
        self.connections.setValue(settings.download_connections)
        self.connections.setMaximumWidth(80)
        self.connections.setToolTip(
            "Connections per file of 16 MiB or more: more is faster where the server caps each one. "
            "At most 32 in all; applies to downloads started afterwards."
        )
        self.connections.valueChanged.connect(self._connections_edited)
        form.addRow("Connections per file", self.connections)
        self.auto_resume = QCheckBox("Resume unfinished downloads automatically at start-up")
        self.auto_resume.setChecked(settings.auto_resume)
        self.auto_resume.toggled.connect(self._auto_resume_toggled)
        form.addRow("", self.auto_resume)
        layout.addWidget(downloads)

        token_box = QGroupBox("Hugging Face token")
        token_form = QFormLayout(token_box)
        token_form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.ExpandingFieldsGrow)
        token_row = QHBoxLayout()
        self.token = QLineEdit()
        self.token.setEchoMode(QLineEdit.EchoMode.Password)
        self.token.setPlaceholderText("hf_… (needed for gated and private repos)")
        self.save_token_button = QPushButton("Save")
        self.test_token_button = QPushButton("Test token")
        self.remove_token_button = QPushButton("Remove")
        self.save_token_button.clicked.connect(self.save_token)
        self.test_token_button.clicked.connect(self.test_token)
        self.remove_token_button.clicked.connect(self.remove_token)
        token_row.addWidget(self.token, 1)
        token_row.addWidget(self.save_token_button)
        token_row.addWidget(self.test_token_button)
        token_row.addWidget(self.remove_token_button)
        token_form.addRow("Token", token_row)
        self.token_status = QLabel("Checking the keyring…")
        self.token_status.setWordWrap(True)
        token_form.addRow("", self.token_status)
        self.token_result = QLabel()
        self.token_result.setWordWrap(True)
        self.token_result.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        token_form.addRow("", self.token_result)
        self.token_result.hide()
        note = QLabel(
            "The token is kept in your OS keyring (or in memory until QuantDesk closes when there is none), "
            "never in a plain file, and is never logged."
        )
        note.setWordWrap(True)
        note.setStyleSheet(f"color: {theme.muted_text().name()};")
        token_form.addRow("", note)
        layout.addWidget(token_box)

        models = QGroupBox("Models page")
        models_form = QFormLayout(models)
        self.default_context = QSpinBox()
        self.default_context.setRange(0, MAX_CONTEXT)
        self.default_context.setSingleStep(1024)
        self.default_context.setSpecialValueText("model's maximum")
        self.default_context.setSuffix(" tokens")
        self.default_context.setValue(settings.default_context)
        self.default_context.setMaximumWidth(220)
        self.default_context.valueChanged.connect(self._context_edited)
        models_form.addRow("Default context length", self.default_context)
        layout.addWidget(models)

        paths = app_paths()
        where = QGroupBox("Files")
        where_form = QFormLayout(where)
        for label, path in (
            ("Settings file", settings_path()),
            ("Catalog cache", paths.catalog_cache_dir),
            ("Data", paths.data_dir),
        ):
            value = QLabel(str(path))
            value.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            value.setStyleSheet(f"color: {theme.muted_text().name()};")
            where_form.addRow(label, value)
        layout.addWidget(where)
        layout.addStretch(1)

    def load(self) -> None:
        """Read the keyring state (worker); call once the window is up."""
        start_worker(token_status, connect={"returned": self.token_status.setText})

    # -- token ----------------------------------------------------------------------------------------

    def save_token(self) -> None:
        """Store the typed token in the keyring."""
        token = self.token.text().strip()
        if not token:
            self._show_result("Paste a token first.", error=True)
            return
        self.save_token_button.setEnabled(False)
        start_worker(
            save_token,
            token,
            connect={
                "returned": self._token_saved,
                "errored": self._token_failed,
                "finished": lambda: self.save_token_button.setEnabled(True),
            },
        )

    def remove_token(self) -> None:
        """Delete the keyring's token."""
        start_worker(
            remove_token,
            connect={"returned": self.token_status.setText, "errored": self._token_failed},
        )

    def test_token(self) -> None:
        """Call whoami with the typed (or stored) token and show the user name."""
        self.test_token_button.setEnabled(False)
        self._show_result("Asking the Hub…")
        start_worker(
            check_token,
            self.token.text(),
            connect={
                "returned": self._token_ok,
                "errored": self._token_failed,
                "finished": lambda: self.test_token_button.setEnabled(True),
            },
        )

    def _token_saved(self, status: str) -> None:
        self.token.clear()
        self.token_status.setText(status)
        self._show_result("Saved in the OS keyring.")

    def _token_ok(self, user: str) -> None:
        self._show_result(f"✓ The token works: logged in as {user}.", ok=True)
        self.token_tested.emit(user)

    def _token_failed(self, exc: BaseException) -> None:
        report = self.errors.report(exc, "checking the token")
        self._show_result(report.message, error=True)
        self.token_tested.emit("")

    def _show_result(self, text: str, error: bool = False, ok: bool = False) -> None:
        from app.catalog.fit import FitStatus

        color = theme.error_color() if error else theme.badge_colors(FitStatus.FITS)[0] if ok else None
        self.token_result.setStyleSheet(f"color: {color.name()};" if color else "")
        self.token_result.setText(text)
        self.token_result.setVisible(bool(text))

    # -- preferences ----------------------------------------------------------------------------------

    def _browse(self) -> None:
        chosen = QFileDialog.getExistingDirectory(self, "Models folder", self.models_dir.text())
        if chosen:
            self.models_dir.setText(chosen)
            self._models_dir_edited()

    def _models_dir_edited(self) -> None:
        text = self.models_dir.text().strip()
        if not text:
            self.models_dir.setText(str(self.settings.models_dir))
            return
        path = Path(text).expanduser()
        if path != self.settings.models_dir:
            self.settings.models_dir = path
            self.models_dir_changed.emit(str(path))

    def _parallel_edited(self, value: int) -> None:
        self.settings.parallel_downloads = value
        self.parallel_changed.emit(value)

    def _connections_edited(self, value: int) -> None:
        self.settings.download_connections = value

    def _auto_resume_toggled(self, checked: bool) -> None:
        self.settings.auto_resume = checked

    def _context_edited(self, value: int) -> None:
        self.settings.default_context = value
        self.default_context_changed.emit(value)
