"""On-disk records of a download, each written atomically (temp file + fsync + rename).

Layout inside a model folder (``STATE_DIR_NAME`` is ``.quantdesk``)::

    .quantdesk/job.json                the branch download: repo, branch, commit, selected files, done flags
    .quantdesk/parts/<name>.part       one file being received, full size from the start, written at offsets
    .quantdesk/parts/<name>.part.json  that file's transfer state (url, commit, size, sha256, validator,
                                       and every segment's start, end and bytes done)
    .quantdesk/complete.json           the completion marker, written only when every file is verified

The segments in the record are the truth about progress: a segment's ``done`` bytes are on disk (the
record is refreshed after the bytes are written, never before), so after a kill -9 the record lags
behind by at most the last chunk per connection. Records of the older single-connection format (no
segments) meant "the part's length is the progress" and are read that way. Records never hold the
token: the URL is the public ``/resolve`` URL and auth headers are rebuilt at request time.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from app.atomic_files import read_json_store, set_aside, write_json_atomic
from app.downloads import notices
from app.downloads.target import STATE_DIR_NAME, folder_name, safe_path

JOB_FILE = "job.json"
MARKER_FILE = "complete.json"
PARTS_DIR = "parts"
FORMAT_VERSION = 1


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``; None when missing, unreadable or not an object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


@dataclass(frozen=True)
class PlannedFile:
    """One file a branch download must deliver, with the identities used to verify and to skip it."""

    path: str
    size: int
    sha256: str | None  # LFS files: verified by sha256; small files by size
    git_oid: str = ""  # git blob sha1: lets an update skip unchanged small files

    def same_content(self, other: PlannedFile) -> bool:
        """Whether both describe the same bytes (sha256 for LFS files, git oid for small ones)."""
        if self.size != other.size:
            return False
        if self.sha256 or other.sha256:
            return self.sha256 == other.sha256
        return bool(self.git_oid) and self.git_oid == other.git_oid


@dataclass
class JobRecord:
    """``job.json``: what is being downloaded into the folder and which files are already in place."""

    repo_id: str
    branch: str
    commit: str
    files: list[PlannedFile]
    done: set[str] = field(default_factory=set)
    all_files: bool = False
    started_at: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "version": FORMAT_VERSION,
            "repo_id": self.repo_id,
            "branch": self.branch,
            "commit": self.commit,
            "files": [asdict(f) for f in self.files],
            "done": sorted(self.done),
            "all_files": self.all_files,
            "started_at": self.started_at,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobRecord | None:
        """Rebuild from :meth:`to_dict`; None for a foreign or damaged record."""
        try:
            return cls(
                repo_id=str(data["repo_id"]),
                branch=str(data["branch"]),
                commit=str(data["commit"]),
                files=[PlannedFile(**f) for f in data["files"]],
                done={str(p) for p in data.get("done", [])},
                all_files=bool(data.get("all_files", False)),
                started_at=float(data.get("started_at", 0.0)),
            )
        except (KeyError, TypeError, ValueError):
            return None


@dataclass(frozen=True)
class CompletionMarker:
    """``complete.json``: the folder holds every file of ``repo_id@commit``, each verified."""

    repo_id: str
    branch: str
    commit: str
    files: tuple[PlannedFile, ...]
    all_files: bool = False
    completed_at: float = 0.0

    @property
    def size_bytes(self) -> int:
        """Total size of the files."""
        return sum(f.size for f in self.files)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "version": FORMAT_VERSION,
            "repo_id": self.repo_id,
            "branch": self.branch,
            "commit": self.commit,
            "files": [asdict(f) for f in self.files],
            "all_files": self.all_files,
            "completed_at": self.completed_at,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CompletionMarker | None:
        """Rebuild from :meth:`to_dict`; None for a foreign or damaged marker."""
        try:
            return cls(
                repo_id=str(data["repo_id"]),
                branch=str(data["branch"]),
                commit=str(data["commit"]),
                files=tuple(PlannedFile(**f) for f in data["files"]),
                all_files=bool(data.get("all_files", False)),
                completed_at=float(data.get("completed_at", 0.0)),
            )
        except (KeyError, TypeError, ValueError):
            return None


@dataclass
class PartState:
    """``<name>.part.json``: enough to resume one file, and to notice the part belongs to other bytes."""

    url: str
    commit: str
    path: str
    expected_size: int
    sha256: str | None
    bytes_done: int = 0
    updated_at: float = 0.0
    segments: list[list[int]] = field(default_factory=list)  # [start, end, done] partitioning the file
    validator: str = ""  # X-Linked-Etag (or ETag) the bytes came with: a different one means new bytes

    def matches(self, planned: PlannedFile) -> bool:
        """Whether the bytes in the part are a prefix of ``planned`` (same content identity)."""
        if self.path != planned.path or self.expected_size != planned.size:
            return False
        return self.sha256 == planned.sha256 if (self.sha256 or planned.sha256) else True

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PartState | None:
        """Rebuild from ``asdict``; None for a damaged record."""
        try:
            state = cls(
                url=str(data["url"]),
                commit=str(data["commit"]),
                path=str(data["path"]),
                expected_size=int(data["expected_size"]),
                sha256=None if data.get("sha256") is None else str(data["sha256"]),
                bytes_done=int(data.get("bytes_done", 0)),
                updated_at=float(data.get("updated_at", 0.0)),
                segments=[[int(v) for v in seg] for seg in data.get("segments", [])],
                validator=str(data.get("validator", "")),
            )
        except (KeyError, TypeError, ValueError):
            return None
        if any(len(seg) != 3 for seg in state.segments):
            return None
        return state


class PartStateWriter:
    """Keeps one file's record current many times a second, cheaply.

    The record is first written atomically (temp file, fsync, rename); each refresh after that
    overwrites it in place with one ``pwrite`` of under a page, padded with spaces to the longest
    version so no stale tail remains (JSON ignores trailing whitespace). A process killed at any moment
    leaves the previous or the new version, never half (one small write either happened or not);
    :meth:`close` fsyncs. A refresh costs microseconds, so segment progress is refreshed after every
    chunk and a kill -9 re-fetches at most about one chunk per connection.
    """

    def __init__(self, folder: FolderState, name: str, state: PartState) -> None:
        self.state = state
        self.path = folder.part_state_path(name)
        folder.save_part_state(name, state)
        self._fd = os.open(self.path, os.O_WRONLY)
        self._length = self.path.stat().st_size

    def update(self, segments: list[tuple[int, int, int]]) -> None:
        """Store the segments' progress (and the validator, which may just have become known)."""
        self.state.segments = [list(seg) for seg in segments]
        self.state.bytes_done = sum(seg[2] for seg in segments)
        self.state.updated_at = time.time()
        data = json.dumps(asdict(self.state), sort_keys=True).encode()
        if len(data) < self._length:
            data += b" " * (self._length - len(data))
        os.pwrite(self._fd, data, 0)
        self._length = len(data)

    def close(self, fsync: bool = True) -> None:
        """Flush the record to disk and close it."""
        if self._fd < 0:
            return
        with contextlib.suppress(OSError):
            if fsync:
                os.fsync(self._fd)
        os.close(self._fd)
        self._fd = -1


def _repo_from_url(url: str) -> str | None:
    """``org/name`` from a ``<endpoint>/<org>/<name>/resolve/<commit>/<path>`` URL."""
    head, sep, _tail = url.partition("/resolve/")
    parts = head.rstrip("/").split("/")
    return "/".join(parts[-2:]) if sep and len(parts) >= 2 else None


def _branch_from_folder(repo_id: str, name: str) -> str:
    """The branch a default folder name encodes (``org_name`` → main), or "" when it is not one."""
    base = folder_name(repo_id, "main")
    if name == base:
        return "main"
    return name[len(base) + 1 :] if name.startswith(base + "_") else ""


_records_locks_guard = threading.Lock()
_records_locks: dict[Path, threading.Lock] = {}


def _records_lock(state_dir: Path) -> threading.Lock:
    """One lock per folder for reading (and mending) its records: the window's model list and its
    download list read a folder at the same moment on start-up, and a damaged record must be set aside
    and rebuilt once, with every reader getting the rebuilt one."""
    with _records_locks_guard:
        return _records_locks.setdefault(state_dir.absolute(), threading.Lock())


class FolderState:
    """Paths and record I/O for one model folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.state_dir = root / STATE_DIR_NAME

    @property
    def job_path(self) -> Path:
        """``job.json``."""
        return self.state_dir / JOB_FILE

    @property
    def marker_path(self) -> Path:
        """``complete.json``."""
        return self.state_dir / MARKER_FILE

    def final_path(self, name: str) -> Path:
        """Where a verified file ends up (validated: stays inside the folder)."""
        return safe_path(self.root, name)

    def part_path(self, name: str) -> Path:
        """The ``.part`` file receiving ``name`` (validated the same way)."""
        return safe_path(self.state_dir / PARTS_DIR, name + ".part")

    def part_state_path(self, name: str) -> Path:
        """The state record next to the ``.part`` file."""
        part = self.part_path(name)
        return part.with_name(part.name + ".json")

    # -- job ------------------------------------------------------------------------------------------

    def load_job(self) -> JobRecord | None:
        """The job record, if any. A damaged one is set aside (renamed, never deleted) and rebuilt from
        the ``.part`` records, so a partial download stays listed and resumes from its bytes."""
        with _records_lock(self.state_dir):
            return self._load_job()

    def _load_job(self) -> JobRecord | None:
        data, warning = read_json_store(self.job_path, what=f"The download record of {self.root}")
        job = JobRecord.from_dict(data) if data else None
        if data is not None and job is None:
            warning = self._set_aside(self.job_path, f"The download record of {self.root}")
        if warning is None:
            return job
        rebuilt = self._rebuild_job()
        if rebuilt is not None:
            with contextlib.suppress(OSError):
                self.save_job(rebuilt)
            warning += f" Its {len(rebuilt.files)} partial file(s) were kept: the download resumes from them."
        notices.add(warning)
        return rebuilt

    def _set_aside(self, path: Path, label: str) -> str:
        """Rename a record that parsed but is not ours to read; the sentence that says so."""
        try:
            aside = set_aside(path)
        except OSError as exc:
            return f"{label} ({path}) is damaged and could not be set aside ({exc.strerror or exc})."
        return f"{label} was damaged; QuantDesk set it aside as {aside} and started a fresh one."

    def part_records(self) -> list[PartState]:
        """Every readable ``.part`` state record in the folder."""
        parts_root = self.state_dir / PARTS_DIR
        if not parts_root.is_dir():
            return []
        found = []
        for record in sorted(parts_root.rglob("*.part.json")):
            data, _warning = read_json_store(record)
            state = PartState.from_dict(data) if data else None
            if state is not None:
                found.append(state)
        return found

    def _rebuild_job(self) -> JobRecord | None:
        """A job record rebuilt from the ``.part`` records (repo and commit are in each record's URL).

        The branch comes from the folder's default name when it has one; otherwise it stays unknown
        (empty) rather than guessed: resuming the wrong branch would discard the parts.
        """
        states = self.part_records()
        repos = {_repo_from_url(s.url) for s in states}
        commits = {s.commit for s in states}
        if not states or len(repos) != 1 or len(commits) != 1 or None in repos:
            return None
        repo_id = repos.pop()
        assert repo_id is not None
        files = [PlannedFile(s.path, s.expected_size, s.sha256) for s in states]
        return JobRecord(repo_id, _branch_from_folder(repo_id, self.root.name), commits.pop(), files)

    def save_job(self, job: JobRecord) -> None:
        """Write the job record atomically."""
        write_json_atomic(self.job_path, job.to_dict())

    # -- marker ---------------------------------------------------------------------------------------

    def load_marker(self) -> CompletionMarker | None:
        """The completion marker, if the folder is complete. A damaged one is set aside: the folder then
        counts as incomplete, and the next download re-checks the files in place by hash and keeps them."""
        label = f"The completion record of {self.root}"
        with _records_lock(self.state_dir):
            data, warning = read_json_store(self.marker_path, what=label)
            marker = CompletionMarker.from_dict(data) if data else None
            if data is not None and marker is None:
                warning = self._set_aside(self.marker_path, label)
        if warning is not None:
            notices.add(warning + " Download the branch again: files already in place are checked and kept.")
        return marker

    def save_marker(self, marker: CompletionMarker) -> None:
        """Write the completion marker atomically (the last write of a successful download)."""
        write_json_atomic(self.marker_path, marker.to_dict())

    def remove_marker(self) -> None:
        """The folder is about to change: it must not look complete meanwhile."""
        with contextlib.suppress(FileNotFoundError):
            self.marker_path.unlink()

    # -- parts ----------------------------------------------------------------------------------------

    def load_part_state(self, name: str) -> PartState | None:
        """The state record of one file's ``.part``, if any.

        A damaged record is set aside and, for an LFS file the job record lists, rebuilt from that entry:
        the bytes in the ``.part`` are kept, and the sha256 check at the end still catches a wrong prefix.
        """
        with _records_lock(self.state_dir):
            return self._load_part_state(name)

    def _load_part_state(self, name: str) -> PartState | None:
        path = self.part_state_path(name)
        data, warning = read_json_store(path)
        state = PartState.from_dict(data) if data else None
        if data is not None and state is None:
            warning = self._set_aside(path, "A partial-file record")
        if warning is None:
            return state
        job_data, _ = read_json_store(self.job_path)
        job = JobRecord.from_dict(job_data) if job_data else None
        planned = next((f for f in job.files if f.path == name), None) if job else None
        if job is None or planned is None or planned.sha256 is None:
            return None
        try:
            have = self.part_path(name).stat().st_size
        except OSError:
            return None
        return PartState("", job.commit, name, planned.size, planned.sha256, have)

    def save_part_state(self, name: str, state: PartState) -> None:
        """Write one file's state record atomically."""
        state.updated_at = time.time()
        write_json_atomic(self.part_state_path(name), asdict(state))

    def discard_part(self, name: str) -> None:
        """Delete a ``.part`` and its record."""
        for path in (self.part_path(name), self.part_state_path(name)):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def discard_all_parts(self) -> None:
        """Delete every ``.part`` and record (cancel with delete)."""
        parts_root = self.state_dir / PARTS_DIR
        if not parts_root.is_dir():
            return
        for path in sorted(parts_root.rglob("*"), reverse=True):
            with contextlib.suppress(OSError):
                path.rmdir() if path.is_dir() else path.unlink()
