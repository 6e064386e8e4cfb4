"""The Chat page offers its loaded model to other apps: the Serve panel follows the load, and the chat's
replies go through the same gate as API requests (real tiny Llama on the CPU)."""

from __future__ import annotations

from pathlib import Path

from pytestqt.qtbot import QtBot

from app.serve.gate import GatedModel
from app.ui.chat import ChatPage
from tests.models.fixtures import TINY_MAIN
from tests.ui.test_chat_page import load, make_page

__all__ = ["make_page"]  # the fixture, imported so pytest finds it here


def test_the_serve_panel_follows_the_loaded_model_and_shares_its_gate(
    qtbot: QtBot, make_page: object, tiny_models: dict[str, Path]
) -> None:
    page: ChatPage = make_page()  # type: ignore[operator]
    assert not page.serve_panel.toggle.isEnabled()  # nothing to serve yet
    info = load(qtbot, page, tiny_models[TINY_MAIN])
    assert info.served is not None and info.gate is not None
    assert page.serve_panel.toggle.isEnabled()
    model = page.controller.worker.session.model  # type: ignore[union-attr]
    assert isinstance(model, GatedModel) and model.gate is info.gate
