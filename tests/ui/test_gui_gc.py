"""Cyclic garbage is collected on the GUI thread, never on a worker that happens to allocate.

A worker that allocates past the collector's threshold used to run the collection itself and destroy
the GUI's Qt objects on its own thread (the heap corruption behind CI's segfaults).
"""

from __future__ import annotations

import gc
import threading
import time
from typing import Any

from PySide6.QtCore import QObject, QThread
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

from app.ui.gui_gc import REQUEST_SPACING_S, collect_on_the_gui_thread


class _Cycle:
    """Cyclic garbage with a Qt object in it, as a page's widgets tied to their slots are."""

    def __init__(self, finalized_on: list[str]) -> None:
        self.me = self
        self.qt = QObject()
        self.finalized_on = finalized_on

    def __del__(self) -> None:
        self.finalized_on.append(threading.current_thread().name)


def _allocate_containers(kept: list[list[int]]) -> None:
    """What a worker does all day (loading a model, parsing a catalog): make container objects and keep
    them, which is what triggers a collection."""
    kept.extend([index] for index in range(50 * gc.get_threshold()[0]))


def test_garbage_made_on_the_gui_thread_is_collected_there_while_a_worker_allocates(
    qtbot: QtBot, qapp: QApplication
) -> None:
    collect_on_the_gui_thread(qapp)  # as the app does at start-up
    finalized_on: list[str] = []
    gc.collect()
    _Cycle(finalized_on)  # garbage at once: only the collector can free it
    kept: list[list[int]] = []
    worker = threading.Thread(target=_allocate_containers, args=(kept,), name="worker")
    worker.start()
    worker.join()
    assert finalized_on == [], "the worker's allocations collected the GUI's garbage on the worker"
    qtbot.waitUntil(lambda: bool(finalized_on), timeout=5_000)
    assert finalized_on == [threading.main_thread().name]


def test_a_qthread_allocating_does_not_collect_either(qtbot: QtBot, qapp: QApplication) -> None:
    collect_on_the_gui_thread(qapp)
    finalized_on: list[str] = []
    gc.collect()
    _Cycle(finalized_on)
    thread = QThread()
    kept: list[list[int]] = []
    thread.run = lambda: _allocate_containers(kept)  # type: ignore[method-assign]
    thread.start()
    assert thread.wait(10_000)
    assert finalized_on == []
    qtbot.waitUntil(lambda: bool(finalized_on), timeout=5_000)
    assert finalized_on == [threading.main_thread().name]


def test_a_library_collecting_on_a_worker_has_the_gui_thread_collect_instead(
    qtbot: QtBot, qapp: QApplication
) -> None:
    """accelerate calls gc.collect() after each checkpoint shard, GPTQModel after loading: on the chat
    thread, while the GUI thread paints."""
    collect_on_the_gui_thread(qapp)
    finalized_on: list[str] = []
    gc.collect()
    _Cycle(finalized_on)
    worker = threading.Thread(target=gc.collect, name="worker")
    worker.start()
    worker.join()
    assert finalized_on == [], "gc.collect() on the worker destroyed the GUI's garbage there"
    qtbot.waitUntil(lambda: bool(finalized_on), timeout=5_000)  # collected soon, without more allocation
    assert finalized_on == [threading.main_thread().name]


def _collect_on_a_worker() -> None:
    worker = threading.Thread(target=gc.collect, name="worker")
    worker.start()
    worker.join()


def test_library_collections_in_quick_succession_freeze_the_window_once_and_the_next_comes_later(
    qtbot: QtBot, qapp: QApplication
) -> None:
    """accelerate asks for a collection after every checkpoint shard: each is a third of a second of frozen
    window with torch imported, so they are spaced, and the last request is still honoured."""
    collect_on_the_gui_thread(qapp)
    full_collections: list[float] = []

    def watch(phase: str, info: dict[str, Any]) -> None:
        if phase == "start" and info["generation"] == 2:
            full_collections.append(time.monotonic())

    thresholds = gc.get_threshold()
    gc.set_threshold(10**9)  # only the requested collections in this test, none by the timer's check
    gc.callbacks.append(watch)
    try:
        first: list[str] = []
        _Cycle(first)
        _collect_on_a_worker()
        qtbot.waitUntil(lambda: bool(first), timeout=5_000)
        second: list[str] = []
        _Cycle(second)
        _collect_on_a_worker()
        _collect_on_a_worker()
        qtbot.wait(int(REQUEST_SPACING_S * 1000 / 2))
        assert second == [], "a second full collection froze the window right after the first"
        qtbot.waitUntil(lambda: bool(second), timeout=int(REQUEST_SPACING_S * 1000 * 2))
        assert second == [threading.main_thread().name]
        qtbot.wait(int(REQUEST_SPACING_S * 1000 * 1.2))
    finally:
        gc.callbacks.remove(watch)
        gc.set_threshold(*thresholds)
    assert len(full_collections) == 2, "the three requests were not two collections"
    assert full_collections[1] - full_collections[0] >= REQUEST_SPACING_S * 0.95
