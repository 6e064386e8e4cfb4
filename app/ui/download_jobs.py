"""The download queue's entries: a job's state, its progress and the pause/cancel hand-over to the core.

Qt-free data (the controller in :mod:`app.ui.downloads_controller` schedules the jobs and owns the
signals); ``app.downloads`` is only named for type checking here, so start-up does not import it.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.ui.error_center import ErrorReport
from app.ui.workers import Worker

if TYPE_CHECKING:
    from app.downloads.manager import BranchDownload
    from app.downloads.progress import DownloadProgress


class JobState(StrEnum):
    """Where a queued download stands."""

    QUEUED = "Queued"
    STARTING = "Starting"
    RUNNING = "Downloading"
    VERIFYING = "Verifying"
    PAUSING = "Pausing"
    PAUSED = "Paused"
    INTERRUPTED = "Not finished last time"
    FAILED = "Failed"
    CANCELLING = "Cancelling"
    CANCELLED = "Cancelled"
    DONE = "Complete"
    GONE = "Folder deleted"  # its folder was removed outside QuantDesk: nothing left to resume


ACTIVE = (JobState.STARTING, JobState.RUNNING, JobState.VERIFYING, JobState.PAUSING, JobState.CANCELLING)
RESUMABLE = (JobState.PAUSED, JobState.INTERRUPTED, JobState.FAILED, JobState.CANCELLED)


def job_key(repo_id: str, branch: str) -> str:
    """The id of a download in the queue."""
    return f"{repo_id}:{branch}"


class JobControl:
    """Pause/cancel requests for a download whose core object may not exist yet (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.download: BranchDownload | None = None
        self.pending: tuple[str, bool] | None = None  # ("pause" | "cancel", delete_partial)

    def attach(self, download: BranchDownload) -> bool:
        """Hand the core object over; False when a stop was requested before it existed."""
        with self._lock:
            self.download = download
            return self.pending is None

    def pause(self) -> None:
        with self._lock:
            if self.download is not None:
                self.download.pause()
            elif self.pending is None:
                self.pending = ("pause", False)

    def cancel(self, delete_partial: bool) -> None:
        with self._lock:
            if self.download is not None:
                self.download.cancel(delete_partial)
            self.pending = ("cancel", delete_partial)


@dataclass
class DownloadJob:
    """One entry of the queue."""

    repo_id: str
    branch: str
    state: JobState = JobState.QUEUED
    target: Path | None = None  # None: the default folder under the models folder
    progress: DownloadProgress | None = None
    error: ErrorReport | None = None
    size_hint: int = 0  # total bytes known before any progress event (from the registry)
    path: Path | None = None  # the finished model folder
    added_at: float = field(default_factory=time.time)
    control: JobControl = field(default_factory=JobControl)
    worker: Worker[Any] | None = None
    last_bytes_at: float = field(default_factory=time.monotonic)  # when done_bytes last grew

    def stalled_for(self, now: float | None = None) -> float:
        """Seconds without a new byte while running (0 when not running)."""
        if self.state is not JobState.RUNNING:
            return 0.0
        return max(0.0, (time.monotonic() if now is None else now) - self.last_bytes_at)

    @property
    def key(self) -> str:
        """See :func:`job_key`."""
        return job_key(self.repo_id, self.branch)

    @property
    def fraction(self) -> float:
        """0..1 of the bytes."""
        if self.state is JobState.DONE:
            return 1.0
        return self.progress.fraction if self.progress else 0.0

    @property
    def total_bytes(self) -> int:
        """Bytes of the whole download (0 while unknown)."""
        return self.progress.total_bytes if self.progress else self.size_hint
