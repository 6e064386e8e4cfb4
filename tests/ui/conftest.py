"""Fixtures for the GUI tests: offscreen Qt, a main window against the Hub emulator, helpers to wait."""

from __future__ import annotations

import os

# Before any QApplication exists (pytest-qt creates it lazily, in the qapp fixture).
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import gc
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from PySide6.QtCore import QThreadPool
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

from app.ui.error_center import ErrorCenter, uninstall_exception_hooks
from app.ui.gui_gc import collect_on_the_gui_thread
from app.ui.main_window import MainWindow
from app.ui.settings import UiSettings
from tests.hub_emulator import HubEmulator

TINY = "TheBloke/TinyLlama-GPTQ"
WAIT_MS = 30_000

WindowFactory = Callable[[], MainWindow]


@pytest.fixture(scope="session", autouse=True)
def _collect_garbage_on_the_gui_thread(qapp: QApplication) -> None:
    """As the app does (:func:`app.ui.app.create_application`)."""
    collect_on_the_gui_thread(qapp)


@pytest.fixture(autouse=True)
def no_garbage_collection_off_the_gui_thread() -> Iterator[None]:
    """A test fails when Python's cyclic collector ran on another thread meanwhile: there it can destroy
    the GUI's Qt objects, and the heap it corrupts crashes the process later (CI's segfaults)."""
    threads: list[str] = []

    def watch(phase: str, _info: dict[str, Any]) -> None:
        if phase == "start" and threading.current_thread() is not threading.main_thread():
            threads.append(threading.current_thread().name)

    gc.callbacks.append(watch)
    yield
    gc.callbacks.remove(watch)
    assert not threads, f"garbage was collected on {sorted(set(threads))}, not on the GUI thread"


def _drain_pool() -> None:
    assert QThreadPool.globalInstance().waitForDone(20_000), "background workers did not finish"


@pytest.fixture
def make_window(qtbot: QtBot, hub: HubEmulator) -> Iterator[WindowFactory]:
    """Builds started main windows (a second call simulates a restart); closes them all at the end."""
    windows: list[MainWindow] = []

    def make() -> MainWindow:
        window = MainWindow(UiSettings(), ErrorCenter())
        qtbot.addWidget(window)
        window.show()
        window.start_background()
        qtbot.waitUntil(lambda: window.hardware is not None, timeout=WAIT_MS)
        windows.append(window)
        return window

    yield make
    for window in windows:
        if window.isVisible():
            window.close()
    _drain_pool()
    uninstall_exception_hooks()


@pytest.fixture
def window(make_window: WindowFactory) -> MainWindow:
    """A started main window against the emulator."""
    return make_window()


def open_repo(qtbot: QtBot, window: MainWindow, text: str) -> None:
    """Open a repo on the Models page and wait until its fetch (cached and fresh) is over."""
    page = window.models_page
    with qtbot.waitSignal(page.loading_finished, timeout=WAIT_MS):
        assert page.open_repo(text)
    _drain_pool()  # the registry look-up that follows a shown catalog
    qtbot.wait(10)
