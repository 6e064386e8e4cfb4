"""One writer per model folder, across threads and processes (the GUI, a second window, the CLI).

Two downloads of one branch into one folder used to race on the same ``.part`` files (one renamed a
part the other was still writing: ``FileNotFoundError``, and the bytes were fetched many times over).
Every writer of a folder (download, repair, cancel-and-delete) holds ``.quantdesk/lock`` through the
``filelock`` package (``flock`` on POSIX, ``msvcrt.locking`` on Windows; released by the OS when a
process dies, so a kill -9 never leaves a stale lock). A second writer does not wait: it is told who is
busy, in one sentence.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from app.downloads.target import STATE_DIR_NAME
from app.errors import FolderBusyError

LOCK_FILE = "lock"


def lock_path(folder: Path) -> Path:
    """The lock file of a model folder."""
    return folder / STATE_DIR_NAME / LOCK_FILE


@contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """Hold the folder's writer lock for the block; :class:`FolderBusyError` at once if it is taken.

    Creates the folder's state directory (the caller has checked the folder can be created).
    """
    path = lock_path(folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    # thread_local=False: the GUI may acquire on one worker thread and the release runs on the same
    # thread, but a per-thread lock would let two threads of one process both "hold" it.
    lock = FileLock(path, timeout=0, thread_local=False)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise FolderBusyError(
            f"QuantDesk is already downloading into {folder}.",
            "Wait for that download to finish (or pause it where it runs), then try again.",
        ) from None
    try:
        yield
    finally:
        lock.release()


def is_busy(folder: Path) -> bool:
    """Whether some writer holds the folder's lock now (never creates anything)."""
    path = lock_path(folder)
    if not path.parent.is_dir():
        return False
    lock = FileLock(path, timeout=0, thread_local=False)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return True
    except OSError:
        return False
    lock.release()
    return False
