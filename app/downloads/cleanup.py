"""What a download wrote into its folder, and "cancel and delete" that removes exactly that.

``.quantdesk/written.json`` lists every file the download put in place (across pauses, crashes and
sessions) and whether it created the folder. Cancel-and-delete removes those files, the ``.part`` files
and records, then the folder itself if the download created it and nothing else is left: a file that
was in the folder before the download started is never touched.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

from app import errors
from app.atomic_files import read_json_store, write_json_atomic
from app.downloads.lock import folder_lock, lock_path
from app.downloads.state import FolderState

WRITTEN_FILE = "written.json"


@dataclass
class WrittenLog:
    """The files a download placed in its folder, and whether the folder is its own."""

    created_folder: bool = False
    files: list[str] = field(default_factory=list)

    @staticmethod
    def path(folder: Path) -> Path:
        """Where the log lives."""
        return FolderState(folder).state_dir / WRITTEN_FILE

    @classmethod
    def load(cls, folder: Path) -> WrittenLog | None:
        """The log, or None when the download never wrote one (or it was damaged and set aside)."""
        data, _warning = read_json_store(cls.path(folder))
        if data is None:
            return None
        files = [f for f in data.get("files", []) if isinstance(f, str)]
        return cls(bool(data.get("created_folder", False)), files)

    def save(self, folder: Path) -> None:
        """Write the log atomically."""
        write_json_atomic(
            self.path(folder), {"created_folder": self.created_folder, "files": sorted(set(self.files))}
        )


def discard_download(folder: Path) -> int:
    """Cancel-and-delete: remove what the download wrote (files it placed, parts, records) and the folder
    if the download created it and nothing else is left. Returns the bytes freed.

    Raises :class:`~app.errors.FolderBusyError` when a download is writing the folder right now.
    """
    state = FolderState(folder)
    if not state.state_dir.is_dir():
        return 0
    freed = 0
    with folder_lock(folder):
        log = WrittenLog.load(folder) or WrittenLog()
        created_dirs: set[Path] = set()
        for name in log.files:
            with contextlib.suppress(OSError, errors.UnsafeFilenameError):
                target = state.final_path(name)
                freed += target.stat().st_size
                target.unlink()
                created_dirs.update(p for p in target.parents if folder in p.parents)
        parts = state.state_dir / "parts"
        if parts.is_dir():
            freed += sum(p.stat().st_size for p in parts.rglob("*") if p.is_file())
        state.discard_all_parts()
        for record in (state.job_path, WrittenLog.path(folder), state.marker_path):
            with contextlib.suppress(FileNotFoundError):
                record.unlink()
        # Sub-folders emptied above (deepest first); rmdir refuses a folder that still holds anything.
        for directory in sorted(created_dirs, key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):
                directory.rmdir()
    # After the lock is released: its file, then the state folder and the model folder if empty.
    with contextlib.suppress(OSError):
        lock_path(folder).unlink()
    for directory in (state.state_dir / "parts", state.state_dir):
        with contextlib.suppress(OSError):
            directory.rmdir()
    if log.created_folder:
        with contextlib.suppress(OSError):
            folder.rmdir()
    return freed
