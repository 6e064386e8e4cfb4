"""The window follows the disk and says what happens: cancel-and-delete leaves nothing behind, a folder
deleted by hand shows as gone, incomplete models show what is on disk, Verify repairs a bit flip, a
folder another process writes is refused in a sentence, retries and stalls are visible, a failed
download's cancel dialog defaults to the safe choice, a "Doesn't fit" branch asks before downloading."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PySide6.QtCore import QThreadPool
from PySide6.QtWidgets import QMessageBox
from pytestqt.qtbot import QtBot

from app.catalog.fit import FitStatus
from app.catalog.table import BranchRow
from app.downloads.progress import DownloadProgress, FileProgress, FileStatus
from app.ui.downloads_controller import DownloadJob, JobState
from app.ui.downloads_page import CancelChoice, format_eta
from app.ui.main_window import MainWindow
from app.units import format_size
from tests.hub_emulator import Faults, HubEmulator
from tests.ui.conftest import TINY, WAIT_MS, WindowFactory, open_repo

ROOT = Path(__file__).resolve().parents[2]
SLOW = Faults(throttle_bps=40_000, server="cdn")
MAIN_FOLDER = "TheBloke_TinyLlama-GPTQ"


def _folder(home: Path, name: str = MAIN_FOLDER) -> Path:
    return home / "data" / "models" / name


def _wait_state(qtbot: QtBot, job: DownloadJob, state: JobState) -> None:
    qtbot.waitUntil(lambda: job.state is state, timeout=WAIT_MS)


def _start_slow(qtbot: QtBot, window: MainWindow, hub: HubEmulator, branch: str = "main") -> DownloadJob:
    open_repo(qtbot, window, TINY)
    hub.faults = SLOW
    key = window.download(TINY, branch)
    job = window.controller.jobs[key]
    qtbot.waitUntil(
        lambda: (
            job.progress is not None
            and any(f.status is FileStatus.DONE for f in job.progress.files)
            and job.progress.done_bytes > 20_000
        ),
        timeout=WAIT_MS,
    )
    return job


def test_cancel_and_delete_leaves_no_half_model(
    qtbot: QtBot, window: MainWindow, hub: HubEmulator, isolated_home: Path
) -> None:
    job = _start_slow(qtbot, window, hub)
    window.downloads_page.confirm_cancel = lambda _parent, _job: CancelChoice.CANCEL_DELETE
    window.downloads_page.cancel(job.key)
    _wait_state(qtbot, job, JobState.CANCELLED)
    qtbot.waitUntil(lambda: not _folder(isolated_home).exists(), timeout=WAIT_MS)
    window.show_page("Local models")
    local = window.local_page
    with qtbot.waitSignal(local.refreshed, timeout=WAIT_MS):
        local.refresh()
    assert local.model.models == []  # no "Incomplete" half model left behind


def test_a_folder_deleted_by_hand_shows_as_gone(
    qtbot: QtBot, window: MainWindow, hub: HubEmulator, isolated_home: Path
) -> None:
    job = _start_slow(qtbot, window, hub)
    window.controller.pause(job.key)
    _wait_state(qtbot, job, JobState.PAUSED)
    shutil.rmtree(_folder(isolated_home))
    window.show_page("Models")
    window.show_page("Downloads")
    _wait_state(qtbot, job, JobState.GONE)
    card = window.downloads_page.cards[job.key]
    assert not card.resume_button.isVisible()
    assert card.retry_button.isVisible() and card.retry_button.text() == "Download again"
    assert "deleted outside QuantDesk" in card.detail.text()
    hub.faults = Faults()
    card.retry_button.click()
    _wait_state(qtbot, window.controller.jobs[job.key], JobState.DONE)  # a new download of the branch
    assert (_folder(isolated_home) / "model.safetensors").is_file()


def test_incomplete_model_shows_bytes_on_disk_and_delete_says_what_it_frees(
    qtbot: QtBot, window: MainWindow, hub: HubEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = _start_slow(qtbot, window, hub)
    window.controller.pause(job.key)
    _wait_state(qtbot, job, JobState.PAUSED)
    window.show_page("Local models")
    local = window.local_page
    qtbot.waitUntil(lambda: len(local.model.models) == 1, timeout=WAIT_MS)
    model = local.model.models[0]
    assert not model.complete and 0 < model.on_disk < model.size_bytes
    shown = local.model.index(0, 3).data()
    assert shown == f"{format_size(model.on_disk)} of {format_size(model.size_bytes)}"
    asked: list[str] = []

    def question(_parent: object, _title: str, text: str, *_args: object) -> QMessageBox.StandardButton:
        asked.append(text)
        return QMessageBox.StandardButton.No

    monkeypatch.setattr(QMessageBox, "question", question)
    from app.ui.local_page import confirm_delete

    assert not confirm_delete(local, model)
    assert f"frees about {format_size(model.on_disk)} " in asked[0]
    assert format_size(model.size_bytes) not in asked[0]


def test_verify_finds_a_bit_flip_and_repair_fixes_it(
    qtbot: QtBot, window: MainWindow, hub: HubEmulator
) -> None:
    open_repo(qtbot, window, TINY)
    key = window.download(TINY, "main")
    _wait_state(qtbot, window.controller.jobs[key], JobState.DONE)
    window.show_page("Local models")
    local = window.local_page
    qtbot.waitUntil(lambda: len(local.model.models) == 1, timeout=WAIT_MS)
    weights = local.model.models[0].path / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 3] ^= 0x04
    weights.write_bytes(bytes(data))
    local.select_row(0)
    assert local.verify_button.isEnabled()
    offered: list[object] = []
    local.verify_panel.confirm_repair = lambda _parent, report: offered.append(report) or True
    with qtbot.waitSignal(local.verify_panel.repaired, timeout=WAIT_MS):
        local.verify_button.click()
        assert local.verify_panel.isVisible() and not local.verify_button.isEnabled()
    assert len(offered) == 1 and [c.path for c in offered[0].bad] == ["model.safetensors"]  # type: ignore[attr-defined]
    assert weights.read_bytes() == (hub.root / TINY / "main" / "model.safetensors").read_bytes()
    assert "Repaired 1 file(s)" in local.verify_panel.label.text()
    with qtbot.waitSignal(local.verify_panel.finished, timeout=WAIT_MS) as done:
        local.verify_button.click()
    assert done.args is not None and "intact" in done.args[0]


def test_a_folder_another_process_writes_is_refused_in_a_sentence(
    qtbot: QtBot, window: MainWindow, hub: HubEmulator, isolated_home: Path
) -> None:
    open_repo(qtbot, window, TINY)
    folder = _folder(isolated_home)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from app.downloads.lock import folder_lock\n"
            "with folder_lock(Path(sys.argv[1])):\n    print('held', flush=True); time.sleep(60)",
            str(folder),
        ],
        cwd=ROOT,
        env=os.environ.copy(),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        key = window.download(TINY, "main")
        job = window.controller.jobs[key]
        _wait_state(qtbot, job, JobState.FAILED)
        assert job.error is not None and f"already downloading into {folder}" in job.error.message
        assert "already downloading" in window.downloads_page.cards[key].detail.text()
    finally:
        holder.kill()
        holder.wait()
    window.controller.retry(key)
    _wait_state(qtbot, job, JobState.DONE)


def test_retries_show_on_the_card_and_a_hard_error_fails_at_once(
    qtbot: QtBot, window: MainWindow, hub: HubEmulator
) -> None:
    open_repo(qtbot, window, TINY)
    hub.faults = Faults(path_contains="/blobs/", fail_first=2, fail_status=503)
    key = window.download(TINY, "main")
    job = window.controller.jobs[key]
    window.show_page("Downloads")
    card = window.downloads_page.cards[key]
    seen: list[str] = []
    window.controller.job_changed.connect(lambda _k: seen.append(card.detail.text()))
    _wait_state(qtbot, job, JobState.DONE)
    assert any(text.startswith("Retrying (1/6) after: ") and "503" in text for text in seen)

    hub.faults = Faults(path_contains="/blobs/", fail_first=1000, fail_status=501)
    started = time.monotonic()
    key = window.download(TINY, "gptq-4bit-32g-actorder_True")
    _wait_state(qtbot, window.controller.jobs[key], JobState.FAILED)
    assert time.monotonic() - started < 10  # was ~30 s of silent retries at "Downloading 0 %"
    assert "501" in window.downloads_page.cards[key].detail.text()


def _running_job(done: int, total: int, speed: float, eta_s: float | None) -> DownloadJob:
    files = (FileProgress("model.safetensors", total, done, FileStatus.RUNNING, speed, eta_s),)
    job = DownloadJob(TINY, "main", state=JobState.RUNNING)
    job.progress = DownloadProgress(TINY, "main", FileStatus.RUNNING, done, total, speed, eta_s, files)
    return job


def test_stalled_download_says_stalled_instead_of_an_absurd_eta() -> None:
    from app.ui.downloads_page import running_detail

    job = _running_job(1000, 10**9, 687.0, 14277 * 3600.0)
    assert "14277" not in running_detail(job, now=job.last_bytes_at + 1)
    assert "more than 2 days left" in running_detail(job, now=job.last_bytes_at + 1)
    stalled = running_detail(job, now=job.last_bytes_at + 25)
    assert stalled.startswith("Stalled: no data for 25 s") and "B/s" not in stalled
    assert format_eta(40) == "40 s left"


def test_cancel_dialog_defaults_to_the_safe_choice(qtbot: QtBot) -> None:
    from PySide6.QtWidgets import QWidget

    from app.ui.downloads_page import cancel_box

    parent = QWidget()
    qtbot.addWidget(parent)
    failed = DownloadJob(TINY, "main", state=JobState.FAILED)
    box, choices = cancel_box(parent, failed)
    assert choices[box.defaultButton()] == CancelChoice.CANCEL_KEEP_FILES
    assert "Keep downloading" not in [b.text() for b in box.buttons()]
    running = DownloadJob(TINY, "main", state=JobState.RUNNING)
    box, choices = cancel_box(parent, running)
    assert choices[box.defaultButton()] == CancelChoice.KEEP_DOWNLOADING


def test_progress_labels_fit_their_column(qtbot: QtBot, window: MainWindow, hub: HubEmulator) -> None:
    from app.ui.downloads_page import progress_column_width

    open_repo(qtbot, window, TINY)
    key = window.download(TINY, "main")
    _wait_state(qtbot, window.controller.jobs[key], JobState.DONE)
    window.show_page("Downloads")
    card = window.downloads_page.cards[key]
    card.files_toggle.setChecked(True)
    assert card.files is not None
    files = card.files
    metrics = files.fontMetrics()
    assert files.header().sectionSize(2) == progress_column_width(files)
    assert files.header().sectionSize(2) > metrics.horizontalAdvance("100 %") + 20
    row_height = files.visualItemRect(files.topLevelItem(0)).height()
    assert row_height >= metrics.height() + 6  # the bar's "100 %" is not clipped vertically


def test_doesnt_fit_branch_asks_before_downloading(
    qtbot: QtBot, window: MainWindow, hub: HubEmulator
) -> None:
    open_repo(qtbot, window, TINY)
    page = window.models_page
    page.planning.context_box.setValue(262_144)
    page.planning.plan_box.setText("0.7, 0.6")
    page.planning.plan_box.editingFinished.emit()
    qtbot.waitUntil(lambda: any(r.fit.status is FitStatus.NO_FIT for r in page.model.rows), timeout=WAIT_MS)
    unfit = next(r for r in page.model.rows if r.fit.status is FitStatus.NO_FIT)
    asked: list[str] = []

    def refuse(_parent: object, row: BranchRow) -> bool:
        asked.append(row.info.branch)
        return False

    page.download_action.confirm_unfit_download = refuse
    page._download_clicked(unfit.info.branch)
    assert asked == [unfit.info.branch]
    assert f"{TINY}:{unfit.info.branch}" not in window.controller.jobs
    page.download_action.confirm_unfit_download = lambda _parent, _row: True
    page._download_clicked(unfit.info.branch)
    assert f"{TINY}:{unfit.info.branch}" in window.controller.jobs


def test_delete_refuses_a_folder_another_process_is_writing(
    qtbot: QtBot, window: MainWindow, hub: HubEmulator
) -> None:
    from app.downloads.lock import folder_lock

    open_repo(qtbot, window, TINY)
    key = window.download(TINY, "main")
    _wait_state(qtbot, window.controller.jobs[key], JobState.DONE)
    window.show_page("Local models")
    local = window.local_page
    qtbot.waitUntil(lambda: len(local.model.models) == 1, timeout=WAIT_MS)
    folder = local.model.models[0].path
    local.select_row(0)
    local.confirm_delete = lambda _parent, _model: True
    # folder_lock: what a `quantdesk download` into this folder holds
    with folder_lock(folder), qtbot.waitSignal(window.errors.reported, timeout=WAIT_MS) as reported:
        local.delete_button.click()
    assert "is being written by a download" in reported.args[0].message  # type: ignore[index]
    assert (folder / "model.safetensors").is_file()


def test_a_damaged_download_record_is_set_aside_and_said_in_the_banner(
    qtbot: QtBot, make_window: WindowFactory, hub: HubEmulator, isolated_home: Path
) -> None:
    window = make_window()
    job = _start_slow(qtbot, window, hub)
    window.close()  # pauses: the download stays resumable
    _wait_state(qtbot, job, JobState.PAUSED)  # the old window is done with the folder
    assert QThreadPool.globalInstance().waitForDone(WAIT_MS)
    qtbot.wait(50)
    hub.faults = Faults()
    record = _folder(isolated_home) / ".quantdesk" / "job.json"
    record.write_bytes(b"\xff\xfe not json")
    restarted = make_window()
    qtbot.waitUntil(lambda: job.key in restarted.controller.jobs, timeout=WAIT_MS)
    assert restarted.controller.jobs[job.key].state is JobState.INTERRUPTED  # still offered for resume
    qtbot.waitUntil(lambda: "set it aside" in restarted.banner.message.text(), timeout=WAIT_MS)
    assert list(record.parent.glob("job.json.corrupt-*"))
    restarted.controller.resume(job.key)
    _wait_state(qtbot, restarted.controller.jobs[job.key], JobState.DONE)
