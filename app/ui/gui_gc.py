"""Python's cyclic garbage collector runs on the GUI thread only, while the window is up.

A collection finalizes whatever cyclic garbage exists at that moment, and the GUI makes plenty (a
closed dialog's widgets tied to their slots, a row's QColor and QFont). Qt objects destroyed on a
worker thread while the GUI thread paints corrupt the heap: a segfault seconds or minutes later, far
from the cause. Two things run collections on workers:

- CPython itself, on whichever thread happens to allocate past the collector's threshold: the chat
  thread loading a model, a catalog fetch. So automatic collection is switched off while the
  application runs, and a timer on the GUI thread collects by the same thresholds instead (pyqtgraph's
  ``GarbageCollector`` does the same).
- Libraries that call ``gc.collect()`` to free memory: accelerate after each checkpoint shard,
  GPTQModel after loading. So ``gc.collect`` called off the GUI thread asks the GUI thread to collect
  and returns at once; it never waits, since the GUI thread may be waiting for that worker. Such
  requests are spaced: a full collection freezes the window for a third of a second with torch
  imported, and accelerate asks once per checkpoint shard.

The check runs often (every 50 ms) so that each collection of the young generations stays small: a
worker loading a model allocates fast, and a quarter-second's worth of young objects took 10-25 ms to
collect, a second's worth of survivors (the middle generation) 100-175 ms.

Reference counting is untouched: acyclic garbage is still freed at once, wherever it is dropped.
"""

from __future__ import annotations

import gc
import math
import threading
import time
from typing import Final

from PySide6.QtCore import QCoreApplication, QObject, Qt, QTimer, Signal

CHECK_INTERVAL_MS: Final = 50
FULL_COLLECTION: Final = 2
REQUEST_SPACING_S: Final = 2.0  # requested full collections: at most one per this many seconds

_library_collect = gc.collect


class GuiThreadCollector(QObject):
    """Collects cyclic garbage on the thread it lives on (the GUI thread), by ``gc``'s own thresholds."""

    _collection_requested = Signal()

    def __init__(self, parent: QObject, interval_ms: int = CHECK_INTERVAL_MS) -> None:
        super().__init__(parent)
        self.thread_id = threading.get_ident()
        self._request_pending = threading.Event()
        # CPython's guard against quadratic full collections: the oldest generation is collected only once
        # the objects promoted into it since the last full collection are a quarter of those it held then.
        # A full collection walks every object (165 ms with torch and transformers imported), on the GUI
        # thread now, so it must stay as rare as CPython keeps it.
        self._long_lived_total = len(gc.get_objects(FULL_COLLECTION))
        self._promoted_since_full = 0
        self._last_full = -math.inf  # time.monotonic() of the last full collection
        self._collection_requested.connect(self._collect_requested, Qt.ConnectionType.QueuedConnection)
        self._deferred = QTimer(self)
        self._deferred.setSingleShot(True)
        self._deferred.timeout.connect(self._collect_requested)
        self._timer = QTimer(self)
        self._timer.timeout.connect(self.check)
        self._timer.start(interval_ms)

    def check(self) -> None:
        """Collect what CPython would collect now: a generation whose count passed its threshold (the oldest
        one only when enough has been promoted into it), with the younger ones."""
        counts = gc.get_count()
        thresholds = gc.get_threshold()
        if counts[0] <= thresholds[0]:
            return
        # get_count()[1] and [2] count collections of the younger generation since this one's last.
        if counts[2] > thresholds[2] and self._promoted_since_full > self._long_lived_total // 4:
            self._collect_all()
        elif counts[1] > thresholds[1]:
            young = len(gc.get_objects(0)) + len(gc.get_objects(1))
            found = _library_collect(1)
            self._promoted_since_full += max(young - found, 0)  # the survivors move to the oldest generation
        else:
            _library_collect(0)

    def _collect_all(self) -> None:
        _library_collect(FULL_COLLECTION)
        self._long_lived_total = len(gc.get_objects(FULL_COLLECTION))
        self._promoted_since_full = 0
        self._last_full = time.monotonic()

    def request_collection(self) -> None:
        """Any thread: have the GUI thread run a full collection, at once or, when one ran less than
        :data:`REQUEST_SPACING_S` ago, once that time is up (requests made meanwhile coalesce)."""
        if not self._request_pending.is_set():
            self._request_pending.set()
            self._collection_requested.emit()

    def _collect_requested(self) -> None:
        wait_s = self._last_full + REQUEST_SPACING_S - time.monotonic()
        if wait_s > 0:
            if not self._deferred.isActive():
                self._deferred.start(math.ceil(wait_s * 1000))
            return
        self._request_pending.clear()
        self._collect_all()


_installed: GuiThreadCollector | None = None


def _collect_on_the_gui_thread_only(generation: int = FULL_COLLECTION) -> int:
    """``gc.collect`` while the application runs: collects on the GUI thread, defers from any other."""
    collector = _installed
    if collector is None or threading.get_ident() == collector.thread_id:
        return _library_collect(generation)
    collector.request_collection()
    return 0


def _restore_automatic_collection() -> None:
    global _installed
    _installed = None
    gc.collect = _library_collect
    gc.enable()


def collect_on_the_gui_thread(app: QCoreApplication) -> GuiThreadCollector:
    """From the GUI thread: for as long as ``app`` runs, cyclic garbage is collected on this thread only.

    Idempotent: a second call returns the collector already installed. Automatic collection and
    ``gc.collect`` come back when the application quits, for whatever Python runs after the event loop.
    """
    global _installed
    existing = app.findChild(GuiThreadCollector)
    if isinstance(existing, GuiThreadCollector):
        return existing
    _installed = GuiThreadCollector(app)
    gc.disable()
    gc.collect = _collect_on_the_gui_thread_only
    app.aboutToQuit.connect(_restore_automatic_collection)
    return _installed
