"""The window's chat thread with a real model (tiny Llama): a core is left for the window."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from PySide6.QtCore import QTimer
from pytestqt.qtbot import QtBot

from app.backends.cpu_threads import threads_beside_a_window, usable_cpus
from app.ui.chat import ChatPage
from tests.models.fixtures import TINY_MAIN
from tests.ui.test_chat_page import load, make_page, send

__all__ = ["make_page"]  # the fixture, imported so pytest finds it here

T = TypeVar("T")


def on_chat_thread(qtbot: QtBot, page: ChatPage, ask: Callable[[], T]) -> T:
    """Run ``ask`` on the page's chat thread (torch's pool size is per thread) and return its answer."""
    answers: list[T] = []
    QTimer.singleShot(0, page.controller.worker, lambda: answers.append(ask()))
    qtbot.waitUntil(lambda: bool(answers), timeout=10_000)
    return answers[0]


def test_the_model_leaves_a_core_for_the_window(
    qtbot: QtBot, make_page: object, tiny_models: dict[str, Path]
) -> None:
    import torch

    page: ChatPage = make_page()  # type: ignore[operator]
    load(qtbot, page, tiny_models[TINY_MAIN])
    expected = threads_beside_a_window(usable_cpus())
    assert on_chat_thread(qtbot, page, torch.get_num_threads) == expected
    assert send(qtbot, page, "Hello").error is None  # and the model still answers
