"""A model that fails inside the backend ends in one sentence in the Chat page (issue 11.7), offscreen."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from app.ui.chat import ChatPage
from app.ui.error_center import ErrorCenter
from app.ui.settings import UiSettings
from tests.models.fixtures import TINY_MAIN
from tests.test_failure_sentences import broken_weights

LOAD_MS = 120_000


@pytest.fixture
def page(qtbot: QtBot) -> Iterator[ChatPage]:
    chat = ChatPage(UiSettings(), ErrorCenter())
    qtbot.addWidget(chat)
    chat.show()
    yield chat
    chat.shutdown()


def test_broken_weights_show_a_sentence_naming_model_and_backend(
    qtbot: QtBot, page: ChatPage, tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    broken = broken_weights(tiny_models[TINY_MAIN], tmp_path / "broken-weights")
    page.add_model_folder(broken)
    with qtbot.waitSignal(page.load_finished, timeout=LOAD_MS) as done:
        page.load_selected()
    assert done.args == [False]
    qtbot.waitUntil(lambda: bool(page.errors.history), timeout=10_000)
    report = page.errors.history[-1]
    assert "GPTQModel failed to load the model in" in report.message and str(broken) in report.message
    assert "IndexError" in report.message and "Traceback" not in report.message
    assert not page.input.isEnabled() and page.model_bar.load_button.isEnabled()
