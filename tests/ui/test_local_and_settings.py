"""Local models (open, delete with confirmation, updates, chat hand-over) and the Settings page."""

from __future__ import annotations

from pathlib import Path

import keyring
import pytest
from keyring.backend import KeyringBackend
from keyring.backends.null import Keyring as NullKeyring
from PySide6.QtCore import QSettings
from pytestqt.qtbot import QtBot

import app.auth
from app.ui.downloads_controller import JobState
from app.ui.main_window import MainWindow
from app.ui.settings import UiSettings, settings_path
from tests.conftest import GRANTED_TOKEN, UNGRANTED_TOKEN
from tests.hub_emulator import HubEmulator
from tests.ui.conftest import TINY, WAIT_MS, WindowFactory, open_repo


class MemoryKeyring(KeyringBackend):
    """A keyring that keeps secrets in a dict (the tests never touch the real one)."""

    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.secrets: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.secrets.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.secrets[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        self.secrets.pop((service, username), None)


@pytest.fixture
def memory_keyring() -> object:
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    yield backend
    keyring.set_keyring(NullKeyring())


def _download(qtbot: QtBot, window: MainWindow, branch: str) -> None:
    key = window.download(TINY, branch)
    qtbot.waitUntil(lambda: window.controller.jobs[key].state is JobState.DONE, timeout=WAIT_MS)


def test_local_page_delete_asks_and_frees_space(qtbot: QtBot, window: MainWindow) -> None:
    open_repo(qtbot, window, TINY)
    _download(qtbot, window, "main")
    window.show_page("Local models")
    local = window.local_page
    qtbot.waitUntil(lambda: len(local.model.models) == 1, timeout=WAIT_MS)
    model = local.model.models[0]
    assert (model.repo_id, model.branch, model.complete) == (TINY, "main", True)
    assert local.selected() == model
    # "Chat with this model" hands the model to the Chat page, which selects and loads it (the emulator's
    # fixture weights are not a real model: the load fails with a message and the page stays usable).
    assert local.chat_button.isEnabled()
    with qtbot.waitSignal(window.chat_page.load_finished, timeout=WAIT_MS):
        local.chat_button.click()
    assert window.stack.currentWidget() is window.chat_page
    entry = window.chat_page.selected_entry()
    assert entry is not None and entry.local is not None and entry.local.model_dir == model.path
    window.show_page("Local models")
    asked: list[str] = []

    def refuse(_parent: object, m: object) -> bool:
        asked.append(str(m))
        return False

    local.confirm_delete = refuse  # type: ignore[assignment]
    local.delete_button.click()
    assert asked and Path(model.path).is_dir()
    local.confirm_delete = lambda _parent, _m: True
    with qtbot.waitSignal(local.deleted, timeout=WAIT_MS) as freed:
        local.delete_button.click()
    assert freed.args is not None and freed.args[0] >= model.size_bytes
    assert not Path(model.path).exists()
    qtbot.waitUntil(lambda: not local.model.models, timeout=WAIT_MS)
    assert "freed" in local.summary.text() or local.empty.isVisible()
    # The Models page no longer calls the branch downloaded.
    window.show_page("Models")
    qtbot.waitUntil(lambda: window.models_page.model.local_info("main").state.value == "", timeout=WAIT_MS)


def test_update_check_and_chat_hand_over(qtbot: QtBot, window: MainWindow, private_hub: HubEmulator) -> None:
    open_repo(qtbot, window, TINY)
    _download(qtbot, window, "main")
    handed: list[object] = []
    window.set_chat_handler(handed.append)
    window.show_page("Local models")
    local = window.local_page
    qtbot.waitUntil(lambda: len(local.model.models) == 1, timeout=WAIT_MS)
    local.check_button.click()
    qtbot.waitUntil(lambda: local.model.index(0, 6).data() == "Up to date", timeout=WAIT_MS)
    # The branch moves on the Hub: the check says so, and so does the Models page after a refresh.
    (private_hub.root / TINY / "main" / "README.md").write_text("# moved\n", encoding="utf-8")
    local.check_button.click()
    qtbot.waitUntil(lambda: local.model.index(0, 6).data() == "Update available", timeout=WAIT_MS)
    open_repo(qtbot, window, TINY)
    qtbot.waitUntil(
        lambda: window.models_page.model.local_info("main").state.value == "Update available", timeout=WAIT_MS
    )
    assert local.chat_button.isEnabled()
    local.chat_button.click()
    assert len(handed) == 1 and getattr(handed[0], "branch", None) == "main"


def test_settings_persist_under_quantdesk_home(qtbot: QtBot, window: MainWindow, isolated_home: Path) -> None:
    page = window.settings_page
    page.parallel.setValue(3)
    page.auto_resume.setChecked(True)
    page.default_context.setValue(8192)
    page.models_dir.setText(str(isolated_home / "elsewhere"))
    page.models_dir.editingFinished.emit()
    window.close()
    assert settings_path() == isolated_home / "config" / "quantdesk.ini"
    stored = QSettings(str(settings_path()), QSettings.Format.IniFormat)
    assert stored.value("window/geometry") is not None
    settings = UiSettings()
    assert (settings.parallel_downloads, settings.auto_resume, settings.default_context) == (3, True, 8192)
    assert settings.models_dir == isolated_home / "elsewhere"
    assert window.controller.parallel == 3


def test_geometry_and_splitter_are_restored(qtbot: QtBot, make_window: WindowFactory) -> None:
    first = make_window()
    open_repo(qtbot, first, TINY)
    first.resize(780, 560)
    first.models_page.splitter.setSizes([200, 300])
    sizes = first.models_page.splitter.sizes()
    first.close()
    second = make_window()
    qtbot.waitUntil(lambda: second.models_page.table.proxy.rowCount() == 8, timeout=WAIT_MS)
    assert (second.width(), second.height()) == (780, 560)
    restored = second.models_page.splitter.sizes()
    # The same split; a few pixels may differ with the status line's text above it.
    assert abs(restored[0] / sum(restored) - sizes[0] / sum(sizes)) < 0.02
    assert second.models_page.planning.context_box.value() == 4096


def test_column_widths_the_user_dragged_are_restored(qtbot: QtBot, make_window: WindowFactory) -> None:
    first = make_window()
    open_repo(qtbot, first, TINY)
    table = first.models_page.table
    header = table.horizontalHeader()
    branch, size = table.branches.column_index("branch"), table.branches.column_index("size")
    fitted_size = header.sectionSize(size)
    header.resizeSection(branch, 333)  # what dragging the header's edge does
    results = first.models_page.search_panel.table.horizontalHeader()
    results.resizeSection(0, 222)
    first.models_page.refresh()  # the table fits its columns again: the dragged one keeps its width
    qtbot.waitUntil(lambda: first.models_page.loader.loading_ref is None, timeout=WAIT_MS)
    assert header.sectionSize(branch) == 333
    first.close()
    second = make_window()
    qtbot.waitUntil(lambda: second.models_page.table.proxy.rowCount() == 8, timeout=WAIT_MS)
    header = second.models_page.table.horizontalHeader()
    assert header.sectionSize(branch) == 333
    assert header.sectionSize(size) == fitted_size  # not dragged: still fitted to its texts
    assert second.models_page.search_panel.table.horizontalHeader().sectionSize(0) == 222


def test_token_is_saved_in_the_keyring_and_tested_with_whoami(
    qtbot: QtBot, window: MainWindow, memory_keyring: MemoryKeyring, monkeypatch: pytest.MonkeyPatch
) -> None:
    page = window.settings_page
    page.token.setText(UNGRANTED_TOKEN)
    page.save_token_button.click()
    qtbot.waitUntil(lambda: "stored in the OS keyring" in page.token_status.text(), timeout=WAIT_MS)
    assert memory_keyring.secrets == {(app.auth.KEYRING_SERVICE, app.auth.KEYRING_USER): UNGRANTED_TOKEN}
    assert page.token.text() == ""  # the field does not keep showing the secret
    assert app.auth.read_token() == UNGRANTED_TOKEN

    monkeypatch.setattr(app.auth, "whoami", lambda token: "alice" if token == UNGRANTED_TOKEN else "?")
    with qtbot.waitSignal(page.token_tested, timeout=WAIT_MS) as tested:
        page.test_token_button.click()
    assert tested.args == ["alice"] and "logged in as alice" in page.token_result.text()

    page.remove_token_button.click()
    qtbot.waitUntil(lambda: "No token" in page.token_status.text(), timeout=WAIT_MS)
    assert memory_keyring.secrets == {}


def test_test_token_reports_a_rejected_token(qtbot: QtBot, window: MainWindow) -> None:
    page = window.settings_page
    page.token.setText("hf_not_a_valid_token")
    with qtbot.waitSignal(page.token_tested, timeout=WAIT_MS) as tested:
        page.test_token_button.click()
    assert tested.args == [""]
    assert "rejected this token" in page.token_result.text()
    assert "rejected this token" in window.banner.message.text()
    assert "hf_not_a_valid_token" not in window.banner.message.text()


@pytest.mark.parametrize("backend", ["keyring.backends.null.Keyring", "keyring.backends.fail.Keyring"])
def test_without_a_keyring_the_saved_token_is_kept_in_memory_and_used(
    qtbot: QtBot, window: MainWindow, backend: str
) -> None:
    # The null backend keeps nothing silently; the fail backend raises: neither may lose the token.
    from keyring.core import load_keyring

    keyring.set_keyring(load_keyring(backend))
    try:
        page = window.settings_page
        page.token.setText(GRANTED_TOKEN)
        page.save_token_button.click()
        qtbot.waitUntil(lambda: "in memory only" in page.token_status.text(), timeout=WAIT_MS)
        status = page.token_status.text()
        assert "keyrings.alt" in status and "HF_TOKEN" in status and GRANTED_TOKEN not in status
        assert app.auth.read_token() == GRANTED_TOKEN
        # The token in memory opens the gated repo with its full facts.
        open_repo(qtbot, window, "TheBloke/Gated-GPTQ")
        assert window.models_page.catalog is not None and not window.models_page.catalog.access_note
    finally:
        keyring.set_keyring(NullKeyring())
