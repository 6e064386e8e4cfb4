"""The Chat page asks before a model's own code runs (issue 11.1), with the real dialog, offscreen."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QMessageBox
from pytestqt.qtbot import QtBot

from app.backends.remote_code import remote_code_allowed
from app.errors import RemoteCodeConsentError
from app.ui.chat import ChatPage
from app.ui.consent_dialog import ALLOW_TEXT, REFUSE_TEXT, consent_box
from app.ui.error_center import ErrorCenter
from app.ui.settings import UiSettings
from tests.models.fixtures import TINY_MAIN
from tests.test_remote_code_consent import make_remote_code_model

LOAD_MS = 120_000


@pytest.fixture
def page(qtbot: QtBot) -> Iterator[ChatPage]:
    chat = ChatPage(UiSettings(), ErrorCenter())
    qtbot.addWidget(chat)
    chat.resize(1100, 700)
    chat.show()
    yield chat
    chat.shutdown()


def answer_dialog_when_shown(qtbot: QtBot, button_text: str, seen: list[str]) -> None:
    """Click ``button_text`` in the next message box that opens (it runs its own event loop)."""

    def click() -> None:
        box = QApplication.activeModalWidget()
        if not isinstance(box, QMessageBox):
            QTimer.singleShot(50, click)
            return
        seen.append(box.text() + "\n" + box.informativeText())
        [button] = [b for b in box.buttons() if b.text() == button_text]
        button.click()

    QTimer.singleShot(50, click)


def test_the_dialog_defaults_to_not_running_the_code(qtbot: QtBot, tmp_path: Path) -> None:
    error = RemoteCodeConsentError(str(tmp_path), "LlamaForCausalLM", code="modeling_x.py")
    box = consent_box(None, error)
    qtbot.addWidget(box)
    assert box.defaultButton().text() == REFUSE_TEXT and box.escapeButton().text() == REFUSE_TEXT  # type: ignore[union-attr]
    assert "modeling_x.py" in box.informativeText() and "trust" in box.informativeText()


def test_refusing_keeps_the_code_unrun_and_allowing_loads_the_model(
    qtbot: QtBot, page: ChatPage, tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    marker = tmp_path / "modeling_x-was-imported"
    folder = make_remote_code_model(tiny_models[TINY_MAIN], tmp_path / "remote-code-model", marker)
    page.add_model_folder(folder)
    seen: list[str] = []

    answer_dialog_when_shown(qtbot, REFUSE_TEXT, seen)
    with qtbot.waitSignal(page.load_finished, timeout=LOAD_MS) as done:
        page.load_selected()
    assert done.args == [False]
    qtbot.waitUntil(lambda: bool(seen), timeout=10_000)
    assert "modeling_x.py" in seen[0]
    assert not marker.exists() and not remote_code_allowed(folder)
    report = page.errors.history[-1]
    assert "ships its own Python code" in report.message and "Traceback" not in report.message

    answer_dialog_when_shown(qtbot, ALLOW_TEXT, seen)
    with qtbot.waitSignal(page.load_finished, timeout=LOAD_MS) as refused:
        page.load_selected()
    assert refused.args == [False]  # this load was refused; the page loads again once consent is kept
    with qtbot.waitSignal(page.load_finished, timeout=LOAD_MS) as loaded:
        pass
    assert loaded.args == [True], [r.message for r in page.errors.history]
    assert marker.exists() and remote_code_allowed(folder)
    assert page.info is not None and page.input.isEnabled()
