"""Re-check a finished model folder against the Hub's recorded identities, and repair only what is wrong.

The completion marker records each file's identity as the Hub gave it: sha256 for LFS files (the
weights) and the git blob sha1 for small files. :func:`verify_folder` re-hashes every file against
those; :func:`repair_folder` re-fetches only the files that differ (same commit, so a repair never turns
into an update) and rewrites the marker when all of them are right again.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

from app import errors
from app.downloads.state import FolderState, JobRecord, PlannedFile

if TYPE_CHECKING:
    from app.catalog.hub_client import HubClient
    from app.downloads.manager import DownloadResult
    from app.downloads.progress import ProgressCallback

_BLOCK = 4 * 1024 * 1024
# (bytes hashed so far, bytes to hash in all, file being hashed)
HashProgress = Callable[[int, int, str], None]


class CheckStatus(StrEnum):
    """What one file's check found."""

    OK = "ok"
    MISSING = "missing"
    WRONG_SIZE = "wrong size"
    WRONG_HASH = "wrong content"
    UNCHECKED = "no recorded hash"  # a small file the marker has no git oid for: size checked only


@dataclass(frozen=True)
class FileCheck:
    """One file's verdict."""

    path: str
    size: int
    status: CheckStatus
    detail: str = ""

    @property
    def bad(self) -> bool:
        """Whether the file must be fetched again."""
        return self.status in (CheckStatus.MISSING, CheckStatus.WRONG_SIZE, CheckStatus.WRONG_HASH)


@dataclass(frozen=True)
class VerifyReport:
    """Every file of a folder, checked."""

    folder: Path
    repo_id: str
    branch: str
    commit: str
    checks: tuple[FileCheck, ...]

    @property
    def bad(self) -> tuple[FileCheck, ...]:
        """The files a repair re-fetches."""
        return tuple(c for c in self.checks if c.bad)

    @property
    def ok(self) -> bool:
        """Whether every file is right."""
        return not self.bad

    def summary(self) -> str:
        """One sentence for the CLI and the GUI."""
        if self.ok:
            return (
                f"All {len(self.checks)} files of {self.repo_id} : {self.branch} in {self.folder} are intact."
            )
        names = ", ".join(f"{c.path} ({c.status})" for c in self.bad[:4])
        more = f" and {len(self.bad) - 4} more" if len(self.bad) > 4 else ""
        return f"{len(self.bad)} of {len(self.checks)} files in {self.folder} are damaged: {names}{more}."


def git_blob_sha1(path: Path, stop: threading.Event | None = None) -> str:
    """The git blob id of a file: sha1 of ``"blob <size>\\0"`` followed by its bytes."""
    hasher = hashlib.sha1(f"blob {path.stat().st_size}\0".encode(), usedforsecurity=False)
    return _hash_into(hasher, path, None, stop)


def sha256_of(
    path: Path, on_bytes: Callable[[int], None] | None = None, stop: threading.Event | None = None
) -> str:
    """The sha256 of a file, read in 4 MiB blocks (``on_bytes`` hears about each)."""
    return _hash_into(hashlib.sha256(), path, on_bytes, stop)


def _hash_into(
    hasher: hashlib._Hash, path: Path, on_bytes: Callable[[int], None] | None, stop: threading.Event | None
) -> str:
    with path.open("rb") as fh:
        while block := fh.read(_BLOCK):
            if stop is not None and stop.is_set():
                raise errors.DownloadError("Verification was cancelled.")
            hasher.update(block)
            if on_bytes is not None:
                on_bytes(len(block))
    return hasher.hexdigest()


def check_file(
    path: Path,
    planned: PlannedFile,
    on_bytes: Callable[[int], None] | None = None,
    stop: threading.Event | None = None,
) -> FileCheck:
    """Compare one file on disk with its recorded identity."""
    try:
        size = path.stat().st_size
    except OSError:
        return FileCheck(planned.path, planned.size, CheckStatus.MISSING)
    if size != planned.size:
        return FileCheck(
            planned.path, planned.size, CheckStatus.WRONG_SIZE, f"{size} bytes instead of {planned.size}"
        )
    if planned.sha256:
        digest = sha256_of(path, on_bytes, stop)
        if digest != planned.sha256:
            return FileCheck(
                planned.path,
                size,
                CheckStatus.WRONG_HASH,
                f"sha256 {digest[:12]}… instead of {planned.sha256[:12]}…",
            )
        return FileCheck(planned.path, size, CheckStatus.OK)
    if planned.git_oid:
        digest = git_blob_sha1(path, stop)
        if on_bytes is not None:
            on_bytes(size)
        if digest != planned.git_oid:
            return FileCheck(
                planned.path,
                size,
                CheckStatus.WRONG_HASH,
                f"git oid {digest[:12]}… instead of {planned.git_oid[:12]}…",
            )
        return FileCheck(planned.path, size, CheckStatus.OK)
    if on_bytes is not None:
        on_bytes(size)
    return FileCheck(planned.path, size, CheckStatus.UNCHECKED)


def verify_folder(
    folder: Path, on_progress: HashProgress | None = None, stop: threading.Event | None = None
) -> VerifyReport:
    """Re-hash every file of a complete model folder against the identities in its completion marker."""
    state = FolderState(folder)
    marker = state.load_marker()
    if marker is None:
        raise errors.DownloadError(
            f"{folder} is not a complete QuantDesk model folder (it has no completion record).",
            "Run the download again: it resumes an incomplete folder and checks the files already there.",
        )
    total = sum(f.size for f in marker.files)
    done = 0
    checks = []
    for planned in marker.files:

        def advance(nbytes: int, name: str = planned.path) -> None:
            nonlocal done
            done += nbytes
            if on_progress is not None:
                on_progress(done, total, name)

        try:
            path = state.final_path(planned.path)
        except errors.UnsafeFilenameError:
            checks.append(FileCheck(planned.path, planned.size, CheckStatus.MISSING, "unsafe name"))
            continue
        check = check_file(path, planned, advance, stop)
        if check.status in (CheckStatus.MISSING, CheckStatus.WRONG_SIZE):
            advance(planned.size)  # nothing to read: count it as covered
        checks.append(check)
    return VerifyReport(folder, marker.repo_id, marker.branch, marker.commit, tuple(checks))


def repair_folder(
    report: VerifyReport,
    *,
    client: HubClient | None = None,
    on_progress: ProgressCallback | None = None,
) -> DownloadResult:
    """Re-fetch exactly the damaged files of ``report`` at the commit the folder was downloaded at.

    The folder stops looking complete first (its marker goes, a job record lists the intact files as
    done), so an interrupted repair resumes like any download; a damaged file is replaced only once
    its new copy is verified.
    """
    from app.downloads.lock import folder_lock
    from app.downloads.manager import BranchDownload, DownloadOptions

    state = FolderState(report.folder)
    with folder_lock(report.folder):
        marker = state.load_marker()
        if marker is None or marker.commit != report.commit:
            raise errors.DownloadError(
                f"{report.folder} changed since it was verified.", "Verify it again, then repair."
            )
        bad = {c.path for c in report.bad}
        job = JobRecord(
            marker.repo_id,
            marker.branch,
            marker.commit,
            list(marker.files),
            {f.path for f in marker.files if f.path not in bad},
            marker.all_files,
        )
        state.save_job(job)
        state.remove_marker()
    options = DownloadOptions(
        target=report.folder, pin_commit=report.commit, all_files=marker.all_files, use_hf_cache=False
    )
    return BranchDownload(
        report.repo_id, report.branch, options=options, client=client, on_progress=on_progress
    ).run()
