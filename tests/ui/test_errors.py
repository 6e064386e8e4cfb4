"""Errors from any thread reach the one banner: a human message, details collapsed, the window usable."""

from __future__ import annotations

import threading

import pytest
from PySide6.QtCore import QTimer
from pytestqt.qtbot import QtBot

from app.errors import NetworkError
from app.ui.error_center import ErrorCenter, install_exception_hooks, uninstall_exception_hooks
from app.ui.main_window import MainWindow
from app.ui.workers import start_worker
from tests.hub_emulator import HubEmulator
from tests.ui.conftest import TINY, open_repo


def _assert_usable(qtbot: QtBot, window: MainWindow) -> None:
    assert window.isVisible()
    open_repo(qtbot, window, TINY)
    assert window.models_page.table.proxy.rowCount() == 8


@pytest.mark.parametrize(
    ("repo", "expected"),
    [
        ("TheBloke/Nope-GPTQ", "was not found on the Hub"),
        ("TheBloke/TinyLlama-GPTQ:nope", "Branch 'nope' does not exist"),
    ],
)
def test_hub_errors_show_their_message(qtbot: QtBot, window: MainWindow, repo: str, expected: str) -> None:
    open_repo(qtbot, window, repo)
    assert window.banner.isVisible()
    assert expected in window.banner.message.text()
    assert "Traceback" not in window.banner.message.text()
    assert not window.banner.details.isVisible()  # details stay collapsed
    page = window.models_page
    assert page.stack.currentWidget() is page.placeholder
    assert page.placeholder.title.text().startswith("Could not open")
    _assert_usable(qtbot, window)


def test_a_bad_repo_id_is_explained_without_a_request(
    qtbot: QtBot, window: MainWindow, hub: HubEmulator
) -> None:
    hub.requests.clear()
    assert window.models_page.open_repo("not a repo") is False
    qtbot.waitUntil(window.banner.isVisible)
    assert "is not a Hugging Face model repo" in window.banner.message.text()
    assert "org/name" in window.banner.message.text()
    assert hub.requests == []
    window.banner.dismiss()
    _assert_usable(qtbot, window)


def test_network_down_shows_a_message(
    qtbot: QtBot, window: MainWindow, monkeypatch: pytest.MonkeyPatch, hub: HubEmulator
) -> None:
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    open_repo(qtbot, window, TINY)
    assert "Could not reach the Hub" in window.banner.message.text()
    assert window.banner.details_button.isVisible()  # the transport error is in the details
    window.banner.details_button.click()
    assert window.banner.details.isVisible() and window.banner.details.toPlainText()
    monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
    _assert_usable(qtbot, window)


@pytest.mark.qt_no_exception_capture
def test_unexpected_exceptions_from_slots_threads_and_workers_reach_the_banner(
    qtbot: QtBot, window: MainWindow
) -> None:
    install_exception_hooks(window.errors)
    try:

        def explode() -> None:
            raise ZeroDivisionError("boom in a slot")

        QTimer.singleShot(0, explode)
        qtbot.waitUntil(lambda: len(window.errors.history) == 1)
        report = window.errors.history[-1]
        assert report.unexpected and "Something unexpected went wrong" in report.message
        assert "ZeroDivisionError" in report.detail and "Traceback" not in report.message
        assert window.banner.isVisible() and not window.banner.details.isVisible()

        thread = threading.Thread(target=lambda: 1 / 0, name="helper")
        thread.start()
        thread.join()
        qtbot.waitUntil(lambda: len(window.errors.history) == 2)

        def fail() -> None:
            raise NetworkError("The Hub is unreachable.", "Try later.")

        start_worker(fail, connect={"errored": window.errors.report})
        qtbot.waitUntil(lambda: len(window.errors.history) == 3)
        assert window.errors.history[-1].message == "The Hub is unreachable. Try later."
        assert "(+2 earlier)" in window.banner.message.text()
        assert window.isVisible()
    finally:
        uninstall_exception_hooks()


def test_error_center_describes_os_errors_in_words() -> None:
    center = ErrorCenter()
    report = center.report(PermissionError(13, "Permission denied", "/models/x"), "saving a file")
    assert report.message == "A file operation failed while saving a file: Permission denied (/models/x)."
