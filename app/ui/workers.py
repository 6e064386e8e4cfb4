"""Background work for the GUI, in the shape of superqt's thread workers.

:func:`start_worker` runs a function (or a generator function) on the global ``QThreadPool``. The
worker reports through Qt signals that are delivered on the GUI thread: ``started``, ``yielded`` (each
value a generator yields: progress, partial results), ``returned`` (the result), ``errored`` (the
exception object, never a traceback string), ``aborted`` (a generator stopped by :meth:`Worker.quit`)
and ``finished`` (always last). A generator worker checks for cancellation between yields.

Workers are kept alive by a module-level set until they finish, so a caller may drop its reference.
The signals object is parented to the application and deleted with ``deleteLater`` on the GUI thread
once ``finished`` was delivered: a QObject is never destroyed by the pool thread that emitted into it.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable, Generator
from typing import Any, Generic, TypeVar

from PySide6.QtCore import QCoreApplication, QObject, QThreadPool, Signal

_R = TypeVar("_R")
_LIVE: set[Worker[Any]] = set()
_LIVE_LOCK = threading.Lock()


class WorkerSignals(QObject):
    """The signals of one worker (a QRunnable cannot carry signals itself)."""

    started = Signal()
    yielded = Signal(object)
    returned = Signal(object)
    errored = Signal(object)
    aborted = Signal()
    finished = Signal()


class Worker(Generic[_R]):
    """Runs ``func(*args, **kwargs)`` on a pool thread; see the module docstring for its signals."""

    def __init__(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        # Owned by the application object (C++), so dropping the last Python reference on a pool
        # thread cannot destroy it there; _release deletes it on the GUI thread.
        self.signals = WorkerSignals(QCoreApplication.instance())
        self._func = func
        self._args = args
        self._kwargs = kwargs
        self._abort = threading.Event()
        self._done = threading.Event()
        self.started = self.signals.started
        self.yielded = self.signals.yielded
        self.returned = self.signals.returned
        self.errored = self.signals.errored
        self.aborted = self.signals.aborted
        self.finished = self.signals.finished

    @property
    def abort_requested(self) -> bool:
        """Whether :meth:`quit` was called."""
        return self._abort.is_set()

    @property
    def is_done(self) -> bool:
        """Whether the function has finished (in any way)."""
        return self._done.is_set()

    def quit(self) -> None:
        """Ask the worker to stop at its next yield (plain functions run to their end)."""
        self._abort.set()

    def wait(self, timeout_s: float | None = None) -> bool:
        """Block until finished (tests and shutdown only; never on the GUI thread in normal use)."""
        return self._done.wait(timeout_s)

    def run(self) -> None:
        """The pool thread's entry point."""
        self.signals.started.emit()
        try:
            result = self._func(*self._args, **self._kwargs)
            if inspect.isgenerator(result):
                result = self._drain(result)
                if self.abort_requested:
                    self.signals.aborted.emit()
                    return
            self.signals.returned.emit(result)
        except BaseException as exc:  # every failure goes to the errored signal, never up the pool thread
            self.signals.errored.emit(exc)
        finally:
            self._done.set()
            self.signals.finished.emit()

    def _release(self) -> None:
        """On the GUI thread, after ``finished`` was delivered: forget the worker, free its signals."""
        with _LIVE_LOCK:
            _LIVE.discard(self)
        self.signals.deleteLater()

    def _drain(self, gen: Generator[Any, Any, Any]) -> Any:
        try:
            while True:
                if self.abort_requested:
                    gen.close()
                    return None
                value = next(gen)
                self.signals.yielded.emit(value)
        except StopIteration as stop:
            return stop.value


def start_worker(
    func: Callable[..., Any],
    *args: Any,
    pool: QThreadPool | None = None,
    connect: dict[str, Callable[..., Any]] | None = None,
    **kwargs: Any,
) -> Worker[Any]:
    """Create a worker, connect ``connect`` ({"returned": slot, ...}) and start it on ``pool``."""
    worker: Worker[Any] = Worker(func, *args, **kwargs)
    for name, slot in (connect or {}).items():
        getattr(worker.signals, name).connect(slot)
    worker.signals.finished.connect(worker._release)  # after the caller's slots
    with _LIVE_LOCK:
        _LIVE.add(worker)
    (pool or QThreadPool.globalInstance()).start(worker.run)
    return worker


def live_workers() -> int:
    """How many workers have not finished yet."""
    with _LIVE_LOCK:
        return len(_LIVE)


def while_alive(owner: QObject, **slots: Callable[..., None]) -> dict[str, Callable[..., None]]:
    """``connect`` slots for :func:`start_worker` that do nothing once ``owner`` was deleted.

    A worker may outlive the widget that started it (a window closed while a request is out); its
    answer must then be dropped rather than reach a deleted C++ object.
    """
    import shiboken6

    def guarded(slot: Callable[..., None]) -> Callable[..., None]:
        def call(*args: Any) -> None:
            if shiboken6.isValid(owner):
                slot(*args)

        return call

    return {name: guarded(slot) for name, slot in slots.items()}
