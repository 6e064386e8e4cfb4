"""On-disk repository store for the Hub emulator.

Layout: ``ROOT/org/name/branch/...files...``. Every sub-directory of ``ROOT/org/name/`` is a branch;
an optional ``ROOT/org/name/repo.json`` file holds repo settings (``{"gated": true}``).

The tree is re-read from disk on every call so tests can edit files between requests; content hashes
are cached per (path, size, mtime_ns) so re-reading stays cheap.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

# Names the real Hub stores through LFS in typical model repos (its default .gitattributes), plus
# anything large: mirrors why a client sees a CDN redirect for weights but not for config files.
LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".model")
LFS_MIN_SIZE = 10 * 1024 * 1024
# Size of a git-lfs pointer file; the real Hub reports it for every LFS entry.
LFS_POINTER_SIZE = 134

_COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
_HASH_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class FileEntry:
    """One file of a branch snapshot."""

    path: str  # posix path relative to the branch root
    abs_path: Path
    size: int
    sha256: str
    blob_sha1: str  # git blob oid: sha1(b"blob %d\0" + content)

    @property
    def is_lfs(self) -> bool:
        """Whether the Hub would store this file through LFS (and redirect /resolve to the CDN)."""
        return self.path.endswith(LFS_SUFFIXES) or self.size >= LFS_MIN_SIZE


@dataclass
class Snapshot:
    """All files of one branch at the time it was read, plus the derived commit and directory set."""

    repo_id: str
    branch: str
    commit: str
    files: dict[str, FileEntry]
    directories: dict[str, str] = field(default_factory=dict)  # path -> tree oid

    def children(self, directory: str) -> list[str]:
        """Paths (files and directories) directly inside ``directory`` ("" is the root), sorted."""
        prefix = f"{directory}/" if directory else ""
        names = [
            p
            for p in (*self.files, *self.directories)
            if p.startswith(prefix) and "/" not in p[len(prefix) :]
        ]
        return sorted(names, key=_path_key)

    def descendants(self, directory: str) -> list[str]:
        """Every path below ``directory`` (recursive), each directory listed right before its content."""
        prefix = f"{directory}/" if directory else ""
        names = [p for p in (*self.files, *self.directories) if p.startswith(prefix)]
        return sorted(names, key=_path_key)


def _path_key(path: str) -> tuple[str, ...]:
    # Sorting by components keeps "a/b" next to "a" rather than after "a-b".
    return tuple(path.split("/"))


class RepoStore:
    """Reads repos from a directory tree and keeps a sha256 -> file index for the CDN."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._lock = threading.Lock()
        # (abs path, size, mtime_ns) -> (sha256, blob sha1); grows with every edit, fine for a test run
        self._hash_cache: dict[tuple[str, int, int], tuple[str, str]] = {}
        # sha256 -> last file seen with that content; filled whenever a snapshot is read
        self._blobs: dict[str, Path] = {}

    # -- repos -------------------------------------------------------------------------------------

    def repo_dir(self, repo_id: str) -> Path | None:
        """Directory of ``org/name``, or None when there is no such repo."""
        parts = repo_id.split("/")
        if len(parts) != 2 or any(p in ("", ".", "..") or "\\" in p for p in parts):
            return None
        path = self.root / parts[0] / parts[1]
        return path if path.is_dir() else None

    def settings(self, repo_id: str) -> dict[str, object]:
        """Contents of ``repo.json`` (empty when absent or unreadable)."""
        repo = self.repo_dir(repo_id)
        if repo is None:
            return {}
        try:
            data = json.loads((repo / "repo.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def is_gated(self, repo_id: str) -> bool:
        """Whether ``repo.json`` marks the repo as gated."""
        return bool(self.settings(repo_id).get("gated", False))

    def branches(self, repo_id: str) -> list[str]:
        """Branch names (sub-directories of the repo directory), sorted."""
        repo = self.repo_dir(repo_id)
        if repo is None:
            return []
        return sorted(entry.name for entry in repo.iterdir() if entry.is_dir())

    def resolve_revision(self, repo_id: str, revision: str) -> str | None:
        """Branch name for a revision given as a branch name, ``refs/heads/NAME`` or a branch's commit sha."""
        branches = self.branches(repo_id)
        if revision in branches:
            return revision
        if revision.startswith("refs/heads/") and revision[len("refs/heads/") :] in branches:
            return revision[len("refs/heads/") :]
        if _COMMIT_RE.match(revision):
            for branch in branches:
                if self.snapshot(repo_id, branch).commit == revision:
                    return branch
        return None

    # -- snapshots ---------------------------------------------------------------------------------

    def snapshot(self, repo_id: str, branch: str) -> Snapshot:
        """Read one branch from disk. The caller must have checked that the branch exists."""
        repo = self.repo_dir(repo_id)
        if repo is None:
            raise KeyError(repo_id)
        base = repo / branch
        files: dict[str, FileEntry] = {}
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames.sort()
            for filename in sorted(filenames):
                abs_path = Path(dirpath) / filename
                rel = abs_path.relative_to(base).as_posix()
                try:
                    entry = self._file_entry(rel, abs_path)
                except OSError:
                    continue  # vanished between listing and hashing: a test is editing the tree
                files[rel] = entry
        commit_hash = hashlib.sha1(b"branch\0" + branch.encode() + b"\0")
        for rel in sorted(files):
            commit_hash.update(f"{rel}\0{files[rel].sha256}\n".encode())
        snap = Snapshot(repo_id=repo_id, branch=branch, commit=commit_hash.hexdigest(), files=files)
        snap.directories = _directory_oids(files)
        with self._lock:
            for entry in files.values():
                self._blobs[entry.sha256] = entry.abs_path
        return snap

    def commit_of(self, repo_id: str, branch: str) -> str:
        """Commit sha of a branch as currently on disk."""
        return self.snapshot(repo_id, branch).commit

    def blob(self, sha256: str) -> tuple[Path, int] | None:
        """File and size currently holding the content ``sha256`` (for the CDN), or None.

        The file is re-hashed (cached by mtime) so a blob edited after indexing is not served under its old
        hash.
        """
        with self._lock:
            path = self._blobs.get(sha256)
        if path is None:
            return None
        try:
            size, digest, _ = self._hashes(path)
        except OSError:
            return None
        return (path, size) if digest == sha256 else None

    def _file_entry(self, rel: str, abs_path: Path) -> FileEntry:
        size, sha256, blob_sha1 = self._hashes(abs_path)
        return FileEntry(path=rel, abs_path=abs_path, size=size, sha256=sha256, blob_sha1=blob_sha1)

    def _hashes(self, abs_path: Path) -> tuple[int, str, str]:
        """(size, sha256, git blob sha1) of a file, from one stat so size and hashes agree."""
        stat = abs_path.stat()
        key = (str(abs_path), stat.st_size, stat.st_mtime_ns)
        with self._lock:
            cached = self._hash_cache.get(key)
        if cached is not None:
            return (stat.st_size, *cached)
        sha256 = hashlib.sha256()
        sha1 = hashlib.sha1(b"blob %d\0" % stat.st_size)
        with abs_path.open("rb") as fh:
            while chunk := fh.read(_HASH_CHUNK):
                sha256.update(chunk)
                sha1.update(chunk)
        result = (sha256.hexdigest(), sha1.hexdigest())
        with self._lock:
            self._hash_cache[key] = result
        return (stat.st_size, *result)


def _directory_oids(files: dict[str, FileEntry]) -> dict[str, str]:
    """Directory path -> a sha1 over its content, so a directory's oid changes with anything below it."""
    dirs: dict[str, hashlib._Hash] = {}
    for rel in sorted(files):
        parts = rel.split("/")
        for depth in range(1, len(parts)):
            directory = "/".join(parts[:depth])
            digest = dirs.setdefault(directory, hashlib.sha1(b"tree\0"))
            digest.update(f"{rel}\0{files[rel].blob_sha1}\n".encode())
    return {path: digest.hexdigest() for path, digest in dirs.items()}


def is_commit_sha(value: str) -> bool:
    """Whether ``value`` looks like a full 40-hex commit sha."""
    return bool(_COMMIT_RE.match(value))
