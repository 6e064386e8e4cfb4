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
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from app.atomic_files import write_json_atomic
from app.downloads.target import STATE_DIR_NAME, safe_path

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
        """The job record, if any."""
        data = read_json(self.job_path)
        return JobRecord.from_dict(data) if data else None

    def save_job(self, job: JobRecord) -> None:
        """Write the job record atomically."""
        write_json_atomic(self.job_path, job.to_dict())

    # -- marker ---------------------------------------------------------------------------------------

    def load_marker(self) -> CompletionMarker | None:
        """The completion marker, if the folder is complete."""
        data = read_json(self.marker_path)
        return CompletionMarker.from_dict(data) if data else None

    def save_marker(self, marker: CompletionMarker) -> None:
        """Write the completion marker atomically (the last write of a successful download)."""
        write_json_atomic(self.marker_path, marker.to_dict())

    def remove_marker(self) -> None:
        """The folder is about to change: it must not look complete meanwhile."""
        with contextlib.suppress(FileNotFoundError):
            self.marker_path.unlink()

    # -- parts ----------------------------------------------------------------------------------------

    def load_part_state(self, name: str) -> PartState | None:
        """The state record of one file's ``.part``, if any."""
        data = read_json(self.part_state_path(name))
        return PartState.from_dict(data) if data else None

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
