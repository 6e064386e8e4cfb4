"""Start the GUI: QApplication, the system theme, the central error handling, a qasync event loop and
the main window. Nothing heavy is imported before the window is visible; I/O starts right after."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from typing import Any

import shiboken6
from PySide6.QtCore import QCoreApplication, QThreadPool, QTimer
from PySide6.QtWidgets import QApplication

from app import __version__
from app.ui.error_center import ErrorCenter, install_exception_hooks
from app.ui.gui_gc import collect_on_the_gui_thread
from app.ui.main_window import MainWindow
from app.ui.settings import UiSettings
from app.ui.theme import apply_system_theme

log = logging.getLogger("quantdesk.ui")


def create_application(argv: Sequence[str] | None = None) -> QApplication:
    """The QApplication (reused when one exists, e.g. under pytest-qt), collecting garbage on its thread."""
    existing = QApplication.instance()
    if isinstance(existing, QApplication):
        collect_on_the_gui_thread(existing)
        return existing
    QCoreApplication.setOrganizationName("QuantDesk")
    QCoreApplication.setApplicationName("QuantDesk")
    QCoreApplication.setApplicationVersion(__version__)
    app = QApplication(list(argv or sys.argv[:1]))
    apply_system_theme(app)
    collect_on_the_gui_thread(app)
    return app


def create_window(errors: ErrorCenter | None = None) -> MainWindow:
    """A main window with its own settings file and the shared error centre."""
    center = errors or ErrorCenter()
    install_exception_hooks(center)
    window = MainWindow(UiSettings(), center)
    center.setParent(window)
    return window


def _loop_exception_handler(center: ErrorCenter) -> Any:
    def handler(_loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if isinstance(exc, BaseException):
            center.report(exc, "running a background task")
        else:
            center.report_message(str(context.get("message", "A background task failed.")))

    return handler


def quit_on_terminal_signals(window: MainWindow) -> QTimer:
    """Ctrl-C (SIGINT) or SIGTERM in the terminal closes the window the way its close button does:
    settings saved, a streaming reply kept, downloads paused."""
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, lambda *_: QTimer.singleShot(0, window.close))
    # Python runs signal handlers only between its own bytecodes; while Qt idles in C++ no Python runs,
    # so a cheap timer gives the handler a chance to run within a fifth of a second.
    ticker = QTimer(window)
    ticker.timeout.connect(lambda: None)
    ticker.start(200)
    return ticker


def run_gui(argv: Sequence[str] | None = None) -> int:
    """Open the main window and run until it is closed; returns the exit code."""
    import qasync

    started = time.perf_counter()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_application(argv)
    center = ErrorCenter()
    window = create_window(center)
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    loop.set_exception_handler(_loop_exception_handler(center))
    window.show()
    quit_on_terminal_signals(window)
    log.info("window shown after %.0f ms", (time.perf_counter() - started) * 1000)
    QTimer.singleShot(0, window.start_background)
    if os.environ.get("QUANTDESK_QUIT_AFTER_MS"):  # smoke runs: `make run` in CI, start-up timing
        QTimer.singleShot(int(os.environ["QUANTDESK_QUIT_AFTER_MS"]), window.close)
    closed = asyncio.Event()
    app.aboutToQuit.connect(closed.set)
    with loop:
        loop.run_until_complete(closed.wait())
    QThreadPool.globalInstance().waitForDone(5000)
    # Delete the window while Qt and Python are both intact: left to PySide's exit-time clean-up, a
    # window kept alive by its signal connections is destroyed after the platform plugin (a segfault).
    shiboken6.delete(window)
    return 0
