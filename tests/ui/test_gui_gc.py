"""Cyclic garbage is collected on the GUI thread, never on a worker that happens to allocate.

A worker that allocates past the collector's threshold used to run the collection itself and destroy
the GUI's Qt objects on its own thread (the heap corruption behind CI's segfaults).
"""

from __future__ import annotations

import gc
import threading

from PySide6.QtCore import QObject, QThread
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

from app.ui.gui_gc import collect_on_the_gui_thread


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
