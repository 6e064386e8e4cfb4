"""The one place every error goes: a human message with details collapsed, never a traceback, never a crash.

Any thread may call :meth:`ErrorCenter.report`; the report is delivered on the GUI thread through a
signal. :func:`install_exception_hooks` routes unexpected exceptions (``sys.excepthook``, which PySide6
also calls for exceptions raised in slots and event handlers, and ``threading.excepthook``) here.
"""

from __future__ import annotations

import logging
import sys
import threading
import traceback
from dataclasses import dataclass
from types import TracebackType

from PySide6.QtCore import QObject, Signal

from app.errors import QuantDeskError

log = logging.getLogger("quantdesk.ui")


@dataclass(frozen=True)
class ErrorReport:
    """What the user sees: a sentence or two, and technical details shown only on request."""

    message: str
    detail: str = ""
    context: str = ""
    unexpected: bool = False


def describe(exc: BaseException, context: str = "") -> ErrorReport:
    """The report for an exception: a QuantDeskError speaks for itself, anything else is a bug."""
    if isinstance(exc, QuantDeskError):
        return ErrorReport(exc.user_message, exc.detail, context)
    where = f" while {context}" if context else ""
    message = f"Something unexpected went wrong{where}. QuantDesk is still running; please try again."
    if isinstance(exc, MemoryError):
        message = f"QuantDesk ran out of memory{where}. Close other programs and try again."
    elif isinstance(exc, OSError) and exc.strerror:
        target = f" ({exc.filename})" if exc.filename else ""
        message = f"A file operation failed{where}: {exc.strerror}{target}."
    detail = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip()
    return ErrorReport(message, detail, context, unexpected=not isinstance(exc, OSError))


class ErrorCenter(QObject):
    """Collects reports from every thread and hands them to the GUI thread."""

    reported = Signal(object)  # ErrorReport

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.history: list[ErrorReport] = []
        self._lock = threading.Lock()
        self.reported.connect(self._remember)

    def report(self, exc: BaseException, context: str = "") -> ErrorReport:
        """Report an exception (thread-safe)."""
        report = describe(exc, context)
        if report.unexpected:
            log.error("unexpected error%s", f" while {context}" if context else "", exc_info=exc)
        else:
            log.warning("%s", report.message)
        self.reported.emit(report)
        return report

    def report_message(self, message: str, detail: str = "", context: str = "") -> ErrorReport:
        """Report a problem that is not an exception (thread-safe)."""
        report = ErrorReport(message, detail, context)
        log.warning("%s", message)
        self.reported.emit(report)
        return report

    def _remember(self, report: ErrorReport) -> None:
        with self._lock:
            self.history.append(report)
            del self.history[:-100]


_previous_hooks: tuple[object, object] | None = None


def install_exception_hooks(center: ErrorCenter) -> None:
    """Route uncaught exceptions (GUI thread, slots, other threads) to ``center`` instead of stderr."""
    global _previous_hooks
    if _previous_hooks is None:
        _previous_hooks = (sys.excepthook, threading.excepthook)

    def excepthook(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        if issubclass(exc_type, KeyboardInterrupt):
            sys.__excepthook__(exc_type, exc, tb)
            return
        if exc.__traceback__ is None and tb is not None:
            exc = exc.with_traceback(tb)
        center.report(exc)

    def thread_hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_value is not None:
            center.report(args.exc_value, f"running {args.thread.name if args.thread else 'a task'}")

    sys.excepthook = excepthook
    threading.excepthook = thread_hook


def uninstall_exception_hooks() -> None:
    """Restore the hooks that were there before :func:`install_exception_hooks` (tests)."""
    global _previous_hooks
    if _previous_hooks is not None:
        sys.excepthook, threading.excepthook = _previous_hooks  # type: ignore[assignment]
        _previous_hooks = None
