"""The download queue as the GUI sees it: jobs over the core's :class:`BranchDownload`, run in workers.

The core does the work (resumable transfers, verification, pause/cancel, the completion marker); this
controller only schedules it: at most ``parallel`` downloads run at once, each in a pool thread, and
progress events (a plain callback on download threads) are turned into a Qt signal delivered on the GUI
thread. Unfinished downloads of the last session come from the core's registry.

``app.downloads`` is imported on worker threads only: it pulls in huggingface_hub, which start-up does
not need.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, QThreadPool, QTimer, Signal

from app.ui.download_jobs import ACTIVE, RESUMABLE, DownloadJob, JobControl, JobState, job_key
from app.ui.error_center import ErrorCenter, describe
from app.ui.models.branch_model import LocalInfo, LocalState
from app.ui.settings import UiSettings
from app.ui.workers import Worker, start_worker

# The job model lives in download_jobs; the pages import it from here too.
__all__ = ["ACTIVE", "RESUMABLE", "DownloadJob", "DownloadsController", "JobState", "job_key"]

if TYPE_CHECKING:
    from app.downloads.manager import DownloadResult
    from app.downloads.progress import DownloadProgress
    from app.downloads.registry import LocalModel


def _run(
    repo_id: str,
    branch: str,
    target: Path | None,
    models_dir: Path,
    control: JobControl,
    on_progress: Any,
    connections: int = 8,
) -> DownloadResult | None:
    """Worker body: build the core download, hand it to ``control``, run it to its end."""
    from app.downloads.manager import BranchDownload, DownloadOptions

    download = BranchDownload(
        repo_id,
        branch,
        options=DownloadOptions(target=target, models_dir=models_dir, connections=connections),
        on_progress=on_progress,
    )
    if not control.attach(download):
        return None  # paused or cancelled before it started
    return download.run()


def _discard_download(target: Path | None, repo_id: str, branch: str, models_dir: Path) -> int:
    from app.downloads.cleanup import discard_download
    from app.downloads.target import default_target

    return discard_download(target or default_target(repo_id, branch, models_dir))


def _unfinished(models_dir: Path) -> list[LocalModel]:
    from app.downloads.registry import incomplete_downloads

    return incomplete_downloads(models_dir)


def _take_notices() -> list[str]:
    from app.downloads import notices

    return notices.take()


def _folders_present(
    jobs: dict[str, tuple[Path | None, Path | None, str, str]], models_dir: Path
) -> dict[str, bool]:
    """Per job key (finished path, chosen folder, repo, branch): whether it is still on disk (worker).

    A finished job's folder (or HF cache snapshot) must exist; a stopped one's folder must still hold
    its records (a folder emptied by hand has nothing left to resume either).
    """
    from app.downloads.target import STATE_DIR_NAME, default_target

    present = {}
    for key, (path, target, repo_id, branch) in jobs.items():
        if path is not None:
            present[key] = path.is_dir()
        else:
            folder = target or default_target(repo_id, branch, models_dir)
            present[key] = (folder / STATE_DIR_NAME).is_dir()
    return present


class _Bridge(QObject):
    """Carries progress from download threads to the GUI thread."""

    progress = Signal(str, object)


class DownloadsController(QObject):
    """The queue; every method is called on the GUI thread."""

    UI_INTERVAL_MS = 100

    job_added = Signal(str)
    job_changed = Signal(str)
    job_removed = Signal(str)
    local_changed = Signal()  # a download completed, was cancelled or deleted: local lists are stale
    unfinished_found = Signal(int)  # unfinished downloads of the last session, once at start-up

    def __init__(
        self,
        settings: UiSettings,
        errors: ErrorCenter,
        pool: QThreadPool | None = None,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.settings = settings
        self.errors = errors
        self.pool = pool or QThreadPool.globalInstance()
        self.jobs: dict[str, DownloadJob] = {}
        self._bridge = _Bridge(self)
        self._bridge.progress.connect(self._on_progress)
        self.parallel = settings.parallel_downloads
        # Progress arrives in bursts (every file's status change is sent at once); widgets are
        # refreshed at most every UI_INTERVAL_MS with the latest snapshot instead of per event.
        self._dirty: set[str] = set()
        self._flush_timer = QTimer(self)
        self._flush_timer.setSingleShot(True)
        self._flush_timer.setInterval(self.UI_INTERVAL_MS)
        self._flush_timer.timeout.connect(self._flush)
        self._schedule_timer = QTimer(self)
        self._schedule_timer.setSingleShot(True)
        self._schedule_timer.setInterval(0)
        self._schedule_timer.timeout.connect(self._schedule)

    # -- queries --------------------------------------------------------------------------------------

    def job(self, key: str) -> DownloadJob | None:
        """A job by key."""
        return self.jobs.get(key)

    def active_count(self) -> int:
        """Downloads running now."""
        return sum(1 for j in self.jobs.values() if j.state in ACTIVE)

    def local_infos(self, repo_id: str) -> dict[str, LocalInfo]:
        """Per branch of ``repo_id``: the state of queued, running and stopped downloads."""
        mapping = {
            JobState.QUEUED: LocalState.QUEUED,
            JobState.STARTING: LocalState.DOWNLOADING,
            JobState.RUNNING: LocalState.DOWNLOADING,
            JobState.VERIFYING: LocalState.DOWNLOADING,
            JobState.PAUSING: LocalState.PAUSED,
            JobState.PAUSED: LocalState.PAUSED,
            JobState.INTERRUPTED: LocalState.INCOMPLETE,
            JobState.FAILED: LocalState.FAILED,
            JobState.CANCELLING: LocalState.PAUSED,
        }
        infos: dict[str, LocalInfo] = {}
        for job in self.jobs.values():
            if job.repo_id == repo_id and job.state in mapping:
                message = job.error.message if job.error else ""
                infos[job.branch] = LocalInfo(mapping[job.state], fraction=job.fraction, message=message)
        return infos

    # -- commands -------------------------------------------------------------------------------------

    def start(self, repo_id: str, branch: str, target: Path | None = None) -> str:
        """Queue a download (or resume the stopped one of the same branch); returns its key."""
        key = job_key(repo_id, branch)
        job = self.jobs.get(key)
        if job is not None and (job.state in ACTIVE or job.state is JobState.QUEUED):
            return key
        if job is None or job.state in (JobState.DONE, JobState.GONE):
            is_new = job is None
            job = DownloadJob(repo_id, branch, target=target or (job.target if job else None))
            self.jobs[key] = job
            if is_new:
                self.job_added.emit(key)
        self._queue(job)
        return key

    def resume(self, key: str) -> None:
        """Continue a paused, failed, cancelled or interrupted download from where it stopped."""
        job = self.jobs.get(key)
        if job is not None and job.state in RESUMABLE:
            self._queue(job)

    def retry(self, key: str) -> None:
        """Try a failed download again; a download whose folder was deleted starts again from zero."""
        job = self.jobs.get(key)
        if job is not None and job.state is JobState.GONE:
            self.start(job.repo_id, job.branch, job.target)
        else:
            self.resume(key)

    def resume_all_interrupted(self) -> int:
        """Resume every download left unfinished by the last session; returns how many."""
        keys = [k for k, j in self.jobs.items() if j.state is JobState.INTERRUPTED]
        for key in keys:
            self.resume(key)
        return len(keys)

    def pause(self, key: str) -> None:
        """Stop after the chunk in flight, keeping everything for a resume."""
        job = self.jobs.get(key)
        if job is None:
            return
        if job.state is JobState.QUEUED:
            self._set_state(job, JobState.PAUSED)
        elif job.state in (JobState.STARTING, JobState.RUNNING, JobState.VERIFYING):
            job.control.pause()
            self._set_state(job, JobState.PAUSING)

    def cancel(self, key: str, delete_partial: bool) -> None:
        """Stop for good; ``delete_partial`` also removes the partial files."""
        job = self.jobs.get(key)
        if job is None or job.state in (
            JobState.DONE,
            JobState.CANCELLED,
            JobState.CANCELLING,
            JobState.GONE,
        ):
            return
        if job.state in ACTIVE:
            job.control.cancel(delete_partial)
            self._set_state(job, JobState.CANCELLING)
            return
        self._set_state(job, JobState.CANCELLED)
        if delete_partial:
            self._delete_parts(job)

    def _delete_parts(self, job: DownloadJob) -> None:
        """Cancel-and-delete of a stopped download: remove what it wrote (worker)."""
        start_worker(
            _discard_download,
            job.target,
            job.repo_id,
            job.branch,
            self.settings.models_dir,
            pool=self.pool,
            connect={
                "errored": lambda exc: self.errors.report(exc, "deleting partial files"),
                "finished": self.local_changed.emit,
            },
        )

    def sync_with_disk(self) -> None:
        """Follow the disk: a stopped download whose folder was deleted by hand is marked gone (worker)."""
        stopped = (*RESUMABLE, JobState.DONE)
        folders = {
            key: (job.path, job.target, job.repo_id, job.branch)
            for key, job in self.jobs.items()
            # A download that failed before it made its folder (progress None) has nothing to lose.
            if job.state in stopped
            and (job.progress is not None or job.state in (JobState.DONE, JobState.INTERRUPTED))
        }
        if folders:
            start_worker(
                _folders_present,
                folders,
                self.settings.models_dir,
                pool=self.pool,
                connect={
                    "returned": self._folders_checked,
                    "errored": lambda exc: self.errors.report(exc, "checking download folders"),
                },
            )

    def _folders_checked(self, present: dict[str, bool]) -> None:
        for key, there in present.items():
            job = self.jobs.get(key)
            if job is not None and not there and job.state in (*RESUMABLE, JobState.DONE):
                job.error = None
                self._set_state(job, JobState.GONE)

    def report_notices(self) -> None:
        """Show what the download stores had to say (a damaged record set aside) in the error banner."""
        start_worker(
            _take_notices,
            pool=self.pool,
            connect={
                "returned": lambda sentences: [
                    self.errors.report_message(s, context="reading download records") for s in sentences
                ]
            },
        )

    def remove(self, key: str) -> None:
        """Take a finished, cancelled or stopped entry off the list (files stay)."""
        job = self.jobs.get(key)
        if job is None or job.state in ACTIVE:
            return
        del self.jobs[key]
        self.job_removed.emit(key)

    def set_parallel(self, count: int) -> None:
        """How many downloads may run at once."""
        self.parallel = max(1, count)
        self._schedule()

    def load_unfinished(self) -> Worker[Any]:
        """Look for downloads the last session left unfinished (worker); lists them as interrupted."""
        return start_worker(
            _unfinished,
            self.settings.models_dir,
            pool=self.pool,
            connect={
                "returned": self._unfinished_loaded,
                "errored": lambda exc: self.errors.report(exc, "looking for unfinished downloads"),
            },
        )

    def shutdown(self, timeout_s: float = 5.0) -> None:
        """Pause every running download and wait (bounded) for them to stop: they resume next time."""
        for job in self.jobs.values():
            if job.state in (JobState.STARTING, JobState.RUNNING, JobState.VERIFYING):
                job.control.pause()
                self._set_state(job, JobState.PAUSING)
        deadline = time.monotonic() + timeout_s
        for job in list(self.jobs.values()):
            if job.worker is not None:
                job.worker.wait(max(0.0, deadline - time.monotonic()))

    # -- internals ------------------------------------------------------------------------------------

    def _unfinished_loaded(self, models: list[LocalModel]) -> None:
        found = 0
        for model in models:
            if model.branch is None:
                continue
            key = job_key(model.repo_id, model.branch)
            if key in self.jobs:
                continue
            job = DownloadJob(
                model.repo_id,
                model.branch,
                state=JobState.INTERRUPTED,
                target=model.path,
                size_hint=model.size_bytes,
            )
            self.jobs[key] = job
            self.job_added.emit(key)
            found += 1
        self.unfinished_found.emit(found)
        self.report_notices()
        if found and self.settings.auto_resume:
            self.resume_all_interrupted()

    def _queue(self, job: DownloadJob) -> None:
        job.error = None
        job.control = JobControl()
        self._set_state(job, JobState.QUEUED)
        # Start workers from the event loop, after the caller's widgets are built: download threads
        # compete for the GIL, so the GUI work of queueing several downloads is done before they run.
        if not self._schedule_timer.isActive():
            self._schedule_timer.start()

    def _schedule(self) -> None:
        for job in list(self.jobs.values()):
            if self.active_count() >= self.parallel:
                return
            if job.state is JobState.QUEUED:
                self._launch(job)

    def _launch(self, job: DownloadJob) -> None:
        key = job.key
        bridge = self._bridge

        def on_progress(progress: DownloadProgress) -> None:
            bridge.progress.emit(key, progress)

        self._set_state(job, JobState.STARTING)
        job.worker = start_worker(
            _run,
            job.repo_id,
            job.branch,
            job.target,
            self.settings.models_dir,
            job.control,
            on_progress,
            self.settings.download_connections,
            pool=self.pool,
            connect={
                "returned": lambda result: self._finished(key, result),
                "errored": lambda exc: self._failed(key, exc),
            },
        )

    def _on_progress(self, key: str, progress: DownloadProgress) -> None:
        job = self.jobs.get(key)
        if job is None:
            return
        if job.progress is None or progress.done_bytes > job.progress.done_bytes:
            job.last_bytes_at = time.monotonic()
        job.progress = progress
        status = str(progress.status)
        if job.state in (JobState.STARTING, JobState.RUNNING, JobState.VERIFYING) and status == "running":
            verifying = any(str(f.status) == "verifying" for f in progress.files)
            job.state = JobState.VERIFYING if verifying and progress.fraction >= 1 else JobState.RUNNING
        self._dirty.add(key)
        if not self._flush_timer.isActive():
            self._flush_timer.start()

    def _flush(self) -> None:
        dirty, self._dirty = self._dirty, set()
        for key in dirty:
            if key in self.jobs:
                self.job_changed.emit(key)

    def _finished(self, key: str, result: DownloadResult | None) -> None:
        job = self.jobs.get(key)
        if job is None:
            return
        job.worker = None
        outcome = str(result.outcome) if result is not None else ""
        pending = job.control.pending
        if outcome == "complete":
            job.path = result.path if result is not None else None
            self._set_state(job, JobState.DONE)
            self.local_changed.emit()
        elif outcome == "cancelled" or (result is None and pending and pending[0] == "cancel"):
            self._set_state(job, JobState.CANCELLED)
            if result is None and pending and pending[1]:
                self._delete_parts(job)  # it never started: delete the parts of an earlier run
            self.local_changed.emit()
        else:
            self._set_state(job, JobState.PAUSED)
        self.report_notices()
        self._schedule()

    def _failed(self, key: str, exc: BaseException) -> None:
        job = self.jobs.get(key)
        if job is None:
            return
        job.worker = None
        job.error = describe(exc, f"downloading {key}")
        self.errors.report(exc, f"downloading {key}")
        self._set_state(job, JobState.FAILED)
        self.report_notices()
        self._schedule()

    def _set_state(self, job: DownloadJob, state: JobState) -> None:
        if state is JobState.RUNNING or state is JobState.STARTING:
            job.last_bytes_at = time.monotonic()
        job.state = state
        self.job_changed.emit(job.key)
