"""Progress events shared by the CLI and the GUI, plus speed smoothing and ETA.

Events are immutable snapshots delivered through a plain callback from worker threads; the GUI wraps
the callback into a Qt signal, the CLI redraws a bar. Nothing here knows about either.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from enum import StrEnum


class FileStatus(StrEnum):
    """Where one file (or the whole download) stands."""

    QUEUED = "queued"
    RUNNING = "running"
    PAUSED = "paused"
    VERIFYING = "verifying"
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True)
class FileProgress:
    """One file's progress."""

    path: str
    size: int
    done_bytes: int
    status: FileStatus
    speed_bps: float = 0.0
    eta_s: float | None = None
    message: str = ""
    connections: int = 0  # connections fetching this file right now


@dataclass(frozen=True)
class DownloadProgress:
    """The whole branch download: totals plus every file."""

    repo_id: str
    branch: str
    status: FileStatus
    done_bytes: int
    total_bytes: int
    speed_bps: float
    eta_s: float | None
    files: tuple[FileProgress, ...]
    message: str = ""

    @property
    def fraction(self) -> float:
        """0..1 (1 for an empty download)."""
        return self.done_bytes / self.total_bytes if self.total_bytes else 1.0


ProgressCallback = Callable[[DownloadProgress], None]


class SpeedMeter:
    """Bytes per second, smoothed: an exponential moving average over short sampling intervals.

    A raw per-chunk rate jumps around (TCP bursts, 1 MiB chunks); an EMA with a ~3 s time constant gives
    a number a person can read and an ETA that doesn't flicker, and still follows a real change in speed.
    The clock starts at the first byte after a (re)start: the seconds spent connecting, retrying or
    paused before it are not transfer time (counting them primed the average with a few hundred B/s and
    an ETA of thousands of hours).
    """

    def __init__(
        self,
        time_constant_s: float = 3.0,
        sample_s: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.time_constant_s = time_constant_s
        self.sample_s = sample_s
        self._clock = clock
        self._rate = 0.0
        self._pending = 0
        self._last = clock()
        self._primed = False
        self._open = False

    def add(self, nbytes: int) -> None:
        """Count bytes received now."""
        if not self._open:
            # The first bytes since a (re)start open the window; they arrived over an unknown wait, so
            # they are not counted (counting them over the wait, or over no time, skews the first sample).
            self._last, self._open = self._clock(), True
            return
        self._pending += nbytes
        self._roll()

    def _roll(self) -> None:
        now = self._clock()
        elapsed = now - self._last
        if elapsed < self.sample_s:
            return
        instant = self._pending / elapsed
        if not self._primed:
            self._rate, self._primed = instant, True
        else:
            # alpha from the elapsed time, so irregular sampling weighs correctly
            alpha = min(1.0, elapsed / self.time_constant_s)
            self._rate += alpha * (instant - self._rate)
        self._pending = 0
        self._last = now

    @property
    def rate(self) -> float:
        """Smoothed bytes per second (0 until the first sample)."""
        self._roll()
        return self._rate

    def reset(self) -> None:
        """Forget the history (after a pause: the old speed says nothing about the next)."""
        self._rate, self._pending, self._primed, self._last = 0.0, 0, False, self._clock()
        self._open = False


def eta(remaining: int, speed_bps: float) -> float | None:
    """Seconds left at ``speed_bps``; None when unknown (no speed yet)."""
    if remaining <= 0:
        return 0.0
    return remaining / speed_bps if speed_bps > 1.0 else None


class ProgressTracker:
    """Thread-safe progress book-keeping that emits :class:`DownloadProgress` to a callback.

    Byte updates are rate-limited (``interval_s``); status changes are emitted at once so a UI never
    misses "verifying", "failed" or "done".
    """

    def __init__(
        self,
        repo_id: str,
        branch: str,
        files: Iterable[tuple[str, int, int, bool]],
        callback: ProgressCallback | None,
        interval_s: float = 0.1,
    ) -> None:
        self.repo_id = repo_id
        self.branch = branch
        self._callback = callback
        self._interval_s = interval_s
        self._lock = threading.Lock()
        self._files: dict[str, FileProgress] = {}
        self._meters: dict[str, SpeedMeter] = {}
        for path, size, done, finished in files:  # finished: verified and in place already
            status = FileStatus.DONE if finished else FileStatus.QUEUED
            self._files[path] = FileProgress(path, size, done, status)
            self._meters[path] = SpeedMeter()
        self._total_meter = SpeedMeter()
        self._status = FileStatus.QUEUED
        self._message = ""
        self._last_emit = 0.0

    def set_file(
        self, path: str, status: FileStatus, message: str = "", done_bytes: int | None = None
    ) -> None:
        """Change one file's status (and optionally its byte count); emits now."""
        with self._lock:
            current = self._files[path]
            done = current.done_bytes if done_bytes is None else done_bytes
            self._files[path] = replace(current, status=status, message=message, done_bytes=done)
            if status is not FileStatus.RUNNING:
                self._meters[path].reset()
        self.emit(force=True)

    def set_connections(self, path: str, count: int) -> None:
        """How many connections fetch ``path`` now (shown per file); emits at the usual rate."""
        with self._lock:
            self._files[path] = replace(self._files[path], connections=max(0, count))
        self.emit()

    def add_bytes(self, path: str, nbytes: int) -> None:
        """Bytes of ``path`` written to disk; emits at most every ``interval_s``."""
        with self._lock:
            current = self._files[path]
            self._files[path] = replace(current, done_bytes=current.done_bytes + nbytes)
            self._meters[path].add(nbytes)
            self._total_meter.add(nbytes)
        self.emit()

    def set_overall(self, status: FileStatus, message: str = "") -> None:
        """The whole download's status; emits now."""
        with self._lock:
            self._status = status
            self._message = message
            if status is not FileStatus.RUNNING:
                self._total_meter.reset()
        self.emit(force=True)

    def snapshot(self) -> DownloadProgress:
        """The current state as an immutable event."""
        with self._lock:
            files = []
            for path, fp in self._files.items():
                speed = self._meters[path].rate if fp.status is FileStatus.RUNNING else 0.0
                files.append(replace(fp, speed_bps=speed, eta_s=eta(fp.size - fp.done_bytes, speed)))
            done = sum(f.done_bytes for f in files)
            total = sum(f.size for f in files)
            speed = self._total_meter.rate if self._status is FileStatus.RUNNING else 0.0
            return DownloadProgress(
                self.repo_id,
                self.branch,
                self._status,
                done,
                total,
                speed,
                eta(total - done, speed),
                tuple(files),
                self._message,
            )

    def emit(self, force: bool = False) -> None:
        """Send a snapshot to the callback (rate-limited unless ``force``)."""
        if self._callback is None:
            return
        now = time.monotonic()
        with self._lock:
            if not force and now - self._last_emit < self._interval_s:
                return
            self._last_emit = now
        self._callback(self.snapshot())


RETRYING_SUFFIX = " Retrying…"  # how a transfer's status message says it will try again


class TrackerHooks:
    """Adapts transfer reports to the progress tracker, numbering retries as they happen so a person
    sees "retrying (2/6) after …" at once instead of a silent 0 %."""

    def __init__(self, tracker: ProgressTracker, max_failures: int) -> None:
        self.tracker = tracker
        self.max_failures = max_failures
        self._retries: dict[str, int] = {}
        self._lock = threading.Lock()

    def bytes_written(self, path: str, nbytes: int) -> None:
        with self._lock:
            retried = self._retries.pop(path, 0)
        if retried:
            self.tracker.set_overall(FileStatus.RUNNING)  # bytes flow again: the retry notice goes
        self.tracker.add_bytes(path, nbytes)

    def status(self, path: str, status: FileStatus, message: str = "", done_bytes: int | None = None) -> None:
        if status is FileStatus.RUNNING and message.endswith(RETRYING_SUFFIX):
            with self._lock:
                count = self._retries[path] = self._retries.get(path, 0) + 1
            cause = message.removesuffix(RETRYING_SUFFIX)
            message = f"retrying ({count}/{self.max_failures}) after: {cause}"
            self.tracker.set_overall(FileStatus.RUNNING, message)
        self.tracker.set_file(path, status, message, done_bytes)

    def connections(self, path: str, count: int) -> None:
        self.tracker.set_connections(path, count)
