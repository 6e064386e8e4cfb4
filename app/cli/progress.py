"""The CLI's live progress bar: total and per file, speed and ETA, redrawn in place on a terminal.

Called from download worker threads (hence the lock). Without a terminal (pipes, logs, tests) it
prints a plain line every few seconds instead of redrawing.
"""

from __future__ import annotations

import threading
import time
from typing import TextIO

from app.downloads.preflight import format_bytes
from app.downloads.progress import DownloadProgress, FileProgress, FileStatus

_BAR = 28
_MAX_FILE_LINES = 8
_PLAIN_INTERVAL_S = 2.0


def _bar(fraction: float, width: int = _BAR) -> str:
    filled = round(max(0.0, min(1.0, fraction)) * width)
    return "[" + "#" * filled + "-" * (width - filled) + "]"


def _eta(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60:02d}:{rest % 60:02d}"


def _speed(bps: float) -> str:
    return f"{format_bytes(bps)}/s" if bps > 0 else "-"


def total_line(p: DownloadProgress) -> str:
    """One line for the whole download."""
    return (
        f"{p.repo_id}:{p.branch} {_bar(p.fraction)} {p.fraction * 100:5.1f}% "
        f"{format_bytes(p.done_bytes)}/{format_bytes(p.total_bytes)} "
        f"{_speed(p.speed_bps)} ETA {_eta(p.eta_s)}"
        + (f" {p.status}" if p.status is not FileStatus.RUNNING else "")
    )


def file_line(f: FileProgress) -> str:
    """One line for one file."""
    fraction = f.done_bytes / f.size if f.size else 1.0
    text = f"  {f.path[-40:]:<40} {_bar(fraction, 16)} {fraction * 100:5.1f}% {f.status:<9} "
    text += _speed(f.speed_bps)
    return text + (f" {f.message}" if f.message else "")


class ProgressPrinter:
    """A ``ProgressCallback`` that draws to ``stream``."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self._lock = threading.Lock()
        self._drawn = 0
        self._last_plain = 0.0
        self._last: DownloadProgress | None = None
        self._finished = False
        self._last_line = ""

    def __call__(self, progress: DownloadProgress) -> None:
        with self._lock:
            if self._finished:
                return
            self._last = progress
            if self.tty:
                self._redraw(progress)
            else:
                now = time.monotonic()
                if now - self._last_plain >= _PLAIN_INTERVAL_S or progress.status is not FileStatus.RUNNING:
                    self._last_plain = now
                    self._plain(total_line(progress))

    def _redraw(self, progress: DownloadProgress) -> None:
        active = [f for f in progress.files if f.status not in (FileStatus.DONE, FileStatus.QUEUED)]
        lines = [total_line(progress), *(file_line(f) for f in active[:_MAX_FILE_LINES])]
        out = []
        if self._drawn:
            out.append(f"\x1b[{self._drawn}F")  # back to the first line drawn last time
        out.extend("\x1b[2K" + line + "\n" for line in lines)
        if len(lines) < self._drawn:
            out.extend("\x1b[2K\n" for _ in range(self._drawn - len(lines)))
            out.append(f"\x1b[{self._drawn - len(lines)}F")
        self._drawn = len(lines)
        self.stream.write("".join(out))
        self.stream.flush()

    def finish(self) -> None:
        """Stop drawing (the final state stays on screen)."""
        with self._lock:
            if not self._finished and not self.tty and self._last is not None:
                self._plain(total_line(self._last))
            self._finished = True

    def _plain(self, line: str) -> None:
        if line != self._last_line:  # status changes of several files often repeat the same totals
            self._last_line = line
            self.stream.write(line + "\n")
            self.stream.flush()
