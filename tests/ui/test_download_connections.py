"""Connections per file in the GUI: the Settings spin box, and what the Downloads page shows per file."""

from __future__ import annotations

from dataclasses import replace

from PySide6.QtCore import QPoint, Qt
from pytestqt.qtbot import QtBot

from app.downloads import FileStatus
from app.ui.downloads_controller import JobState
from app.ui.main_window import MainWindow
from app.ui.settings import UiSettings
from tests.hub_emulator import Faults, HubEmulator
from tests.ui.conftest import TINY, WAIT_MS, open_repo


def test_connections_setting_is_1_to_16_and_persists(qtbot: QtBot, window: MainWindow) -> None:
    spin = window.settings_page.connections
    assert (spin.minimum(), spin.maximum(), spin.value()) == (1, 16, 8)
    spin.setValue(12)
    assert UiSettings().download_connections == 12


def test_downloads_page_shows_the_connections_of_each_file(
    qtbot: QtBot, window: MainWindow, hub: HubEmulator
) -> None:
    open_repo(qtbot, window, TINY)
    hub.faults = Faults(throttle_bps=40_000, server="cdn")
    page = window.models_page
    model = page.model
    index = page.table.proxy.mapFromSource(model.index(model.row_of("main"), model.column_index("download")))
    rect = page.table.visualRect(index)
    qtbot.mouseClick(
        page.table.viewport(), Qt.MouseButton.LeftButton, pos=QPoint(rect.left() + 20, rect.center().y())
    )
    job = window.controller.job(f"{TINY}:main")
    assert job is not None
    window.show_page("Downloads")
    card = window.downloads_page.cards[job.key]
    card.files_toggle.setChecked(True)
    # The small weights file (below the 16 MiB threshold) is fetched over one connection.
    qtbot.waitUntil(lambda: "1 connection" in card.detail.text(), timeout=WAIT_MS)
    assert job.state is JobState.RUNNING
    # A large file's row says how many connections fetch it.
    assert job.progress is not None
    files = tuple(
        replace(f, status=FileStatus.RUNNING, connections=8) if f.path == "model.safetensors" else f
        for f in job.progress.files
    )
    job.progress = replace(job.progress, files=files)
    card.update_from(job)
    in_use = sum(f.connections for f in files)  # the card counts every file's connections
    assert in_use >= 8 and f"{in_use} connections" in card.detail.text()
    assert card.files is not None
    row = next(
        card.files.topLevelItem(i)
        for i in range(card.files.topLevelItemCount())
        if card.files.topLevelItem(i).text(0) == "model.safetensors"
    )
    assert row.text(4).endswith("· 8 connections")
    card.pause_button.click()
    qtbot.waitUntil(lambda: job.state is JobState.PAUSED, timeout=WAIT_MS)
