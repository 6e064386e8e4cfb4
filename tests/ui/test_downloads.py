"""Downloads from the GUI against the emulator: progress, pause, resume, cancel, restart, local models."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QPoint, Qt
from pytestqt.qtbot import QtBot

from app.ui.downloads_controller import DownloadJob, JobState
from app.ui.downloads_page import CancelChoice
from app.ui.main_window import MainWindow
from app.ui.settings import UiSettings
from tests.hub_emulator import Faults, HubEmulator
from tests.ui.conftest import TINY, WAIT_MS, WindowFactory, open_repo

SLOW = Faults(throttle_bps=40_000, server="cdn")  # the weight file (~190 KiB) takes ~5 s


def _click_download(qtbot: QtBot, window: MainWindow, branch: str) -> None:
    page = window.models_page
    model = page.model
    index = page.table.proxy.mapFromSource(model.index(model.row_of(branch), model.column_index("download")))
    page.table.scrollTo(index)
    rect = page.table.visualRect(index)
    qtbot.mouseClick(
        page.table.viewport(), Qt.MouseButton.LeftButton, pos=QPoint(rect.left() + 20, rect.center().y())
    )


def _job(window: MainWindow, branch: str) -> DownloadJob:
    job = window.controller.job(f"{TINY}:{branch}")
    assert job is not None
    return job


def _parts(home: Path, branch_folder: str) -> list[Path]:
    return [p for p in (home / "data" / "models" / branch_folder / ".quantdesk" / "parts").rglob("*.part")]


def _wait_state(qtbot: QtBot, job: DownloadJob, state: JobState) -> None:
    qtbot.waitUntil(lambda: job.state is state, timeout=WAIT_MS)


def test_download_with_progress_pause_resume_and_cancel(
    qtbot: QtBot, window: MainWindow, hub: HubEmulator, isolated_home: Path
) -> None:
    open_repo(qtbot, window, TINY)
    hub.faults = SLOW
    events: list[int] = []
    window.controller.job_changed.connect(
        lambda key: events.append(
            j.progress.done_bytes if (j := window.controller.job(key)) and j.progress else -1
        )
    )
    _click_download(qtbot, window, "main")
    job = _job(window, "main")
    window.show_page("Downloads")
    card = window.downloads_page.cards[job.key]
    qtbot.waitUntil(
        lambda: job.progress is not None and 0 < job.progress.done_bytes < job.progress.total_bytes,
        timeout=WAIT_MS,
    )
    assert job.state in (JobState.RUNNING, JobState.STARTING)
    assert window.models_page.model.local_info("main").state.value == "Downloading"
    assert (
        "Downloading"
        in window.models_page.model.index(0, window.models_page.model.column_index("download")).data()
    )
    assert card.pause_button.isVisible() and card.cancel_button.isVisible()
    assert len(job.progress.files) > 1 if job.progress else False

    card.pause_button.click()
    _wait_state(qtbot, job, JobState.PAUSED)
    assert card.resume_button.isVisible() and not card.pause_button.isVisible()
    paused_at = job.progress.done_bytes if job.progress else 0
    assert _parts(isolated_home, "TheBloke_TinyLlama-GPTQ"), "a paused download keeps its partial file"

    card.resume_button.click()
    qtbot.waitUntil(
        lambda: (
            job.state is JobState.RUNNING and job.progress is not None and job.progress.done_bytes > paused_at
        ),
        timeout=WAIT_MS,
    )

    window.downloads_page.confirm_cancel = lambda _parent, _job: CancelChoice.CANCEL_DELETE
    card.cancel_button.click()
    _wait_state(qtbot, job, JobState.CANCELLED)
    qtbot.waitUntil(lambda: not _parts(isolated_home, "TheBloke_TinyLlama-GPTQ"), timeout=WAIT_MS)
    assert len([e for e in events if e > 0]) >= 3  # progress events arrived on the GUI thread

    # Download again, at full speed, to completion: the Models page shows "Downloaded".
    hub.faults = Faults()
    window.controller.resume(job.key)
    _wait_state(qtbot, job, JobState.DONE)
    assert job.path is not None and (job.path / "config.json").is_file()
    assert card.open_button.isVisible()
    qtbot.waitUntil(
        lambda: window.models_page.model.local_info("main").state.value == "Downloaded", timeout=WAIT_MS
    )


def test_cancel_can_keep_partial_files_and_is_refused_on_keep_downloading(
    qtbot: QtBot, window: MainWindow, hub: HubEmulator, isolated_home: Path
) -> None:
    open_repo(qtbot, window, TINY)
    hub.faults = SLOW
    key = window.download(TINY, "gptq-4bit-32g-actorder_True")
    job = _job(window, "gptq-4bit-32g-actorder_True")
    qtbot.waitUntil(lambda: job.progress is not None and job.progress.done_bytes > 0, timeout=WAIT_MS)
    page = window.downloads_page
    page.confirm_cancel = lambda _parent, _job: CancelChoice.KEEP_DOWNLOADING
    page.cancel(key)
    assert job.state in (JobState.RUNNING, JobState.STARTING)
    page.confirm_cancel = lambda _parent, _job: CancelChoice.CANCEL_KEEP_FILES
    page.cancel(key)
    _wait_state(qtbot, job, JobState.CANCELLED)
    assert _parts(isolated_home, "TheBloke_TinyLlama-GPTQ_gptq-4bit-32g-actorder_True")


def test_a_failed_download_shows_its_error_inline_and_can_be_retried(
    qtbot: QtBot, window: MainWindow, hub: HubEmulator
) -> None:
    open_repo(qtbot, window, TINY)
    hub.faults = Faults(fail_first=1000, fail_status=500)
    window.download(TINY, "main")
    job = _job(window, "main")
    _wait_state(qtbot, job, JobState.FAILED)
    window.show_page("Downloads")
    card = window.downloads_page.cards[job.key]
    assert job.error is not None and "500" in card.detail.text()
    assert card.retry_button.isVisible()
    assert window.banner.isVisible()
    hub.faults = Faults()
    card.retry_button.click()
    _wait_state(qtbot, job, JobState.DONE)
    assert not card.retry_button.isVisible()


def test_restart_offers_to_resume_and_local_page_shows_complete_and_partial(
    qtbot: QtBot, make_window: WindowFactory, hub: HubEmulator
) -> None:
    window = make_window()
    open_repo(qtbot, window, TINY)
    window.download(TINY, "main")
    _wait_state(qtbot, _job(window, "main"), JobState.DONE)
    hub.faults = SLOW
    window.download(TINY, "gptq-4bit-64g-actorder_True")
    partial = _job(window, "gptq-4bit-64g-actorder_True")
    qtbot.waitUntil(lambda: partial.progress is not None and partial.progress.done_bytes > 0, timeout=WAIT_MS)

    # The local page: the finished model is complete, the running one is not.
    window.show_page("Local models")
    local = window.local_page
    qtbot.waitUntil(lambda: len(local.model.models) == 2, timeout=WAIT_MS)
    states = {
        m.branch: (m.complete, local.model.index(i, 4).data()) for i, m in enumerate(local.model.models)
    }
    assert states["main"] == (True, "Complete")
    assert states["gptq-4bit-64g-actorder_True"] == (False, "Incomplete")
    # A folder a download is writing cannot be deleted from under it.
    busy = next(i for i, m in enumerate(local.model.models) if not m.complete)
    local.select_row(busy)
    local.confirm_delete = lambda _parent, _model: True
    local.delete_button.click()
    assert "is downloading" in window.banner.message.text()
    assert local.model.models[busy].path.is_dir()

    window.close()  # pauses the running download; it stays resumable
    assert partial.state is JobState.PAUSED or partial.state is JobState.PAUSING
    hub.faults = Faults()

    restarted = make_window()
    downloads = restarted.downloads_page
    key = f"{TINY}:gptq-4bit-64g-actorder_True"
    qtbot.waitUntil(lambda: key in restarted.controller.jobs, timeout=WAIT_MS)
    job = restarted.controller.jobs[key]
    assert job.state is JobState.INTERRUPTED
    assert f"{TINY}:main" not in restarted.controller.jobs  # finished downloads are not offered
    restarted.show_page("Downloads")
    assert downloads.resume_banner.isVisible() and "did not finish last time" in downloads.resume_label.text()
    assert downloads.cards[key].resume_button.isVisible()
    downloads.resume_all_button.click()
    _wait_state(qtbot, job, JobState.DONE)
    assert not downloads.resume_banner.isVisible()


def test_auto_resume_setting_resumes_without_a_click(
    qtbot: QtBot, make_window: WindowFactory, hub: HubEmulator
) -> None:
    window = make_window()
    open_repo(qtbot, window, TINY)
    hub.faults = SLOW
    window.download(TINY, "main")
    job = _job(window, "main")
    qtbot.waitUntil(lambda: job.progress is not None and job.progress.done_bytes > 0, timeout=WAIT_MS)
    window.settings_page.auto_resume.setChecked(True)
    window.close()
    hub.faults = Faults()
    assert UiSettings().auto_resume
    restarted = make_window()
    qtbot.waitUntil(lambda: f"{TINY}:main" in restarted.controller.jobs, timeout=WAIT_MS)
    _wait_state(qtbot, restarted.controller.jobs[f"{TINY}:main"], JobState.DONE)


def test_parallel_limit_queues_the_rest(qtbot: QtBot, window: MainWindow, hub: HubEmulator) -> None:
    open_repo(qtbot, window, TINY)
    window.settings_page.parallel.setValue(1)
    assert window.controller.parallel == 1
    hub.faults = SLOW
    window.download(TINY, "main")
    window.download(TINY, "gptq-4bit-32g-actorder_True")
    second = _job(window, "gptq-4bit-32g-actorder_True")
    assert second.state is JobState.QUEUED
    assert window.models_page.model.local_info("gptq-4bit-32g-actorder_True").state.value == "Queued"
    hub.faults = Faults()
    _wait_state(qtbot, second, JobState.DONE)
