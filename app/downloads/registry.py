"""Local models: what QuantDesk downloaded (complete or not) and what the Hugging Face cache holds.

QuantDesk's folders are found by scanning the models folder plus an index of folders chosen with
``--dir`` elsewhere (written when a download starts, so an interrupted one is found after a crash).
A folder counts as complete only with its completion marker; a job record alone means "incomplete".
Models fetched by another tool into the HF cache (``scan_cache_dir``) are listed with source
``hf-cache``, so QuantDesk does not fetch them a second time.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from app.atomic_files import read_json_store, write_json_atomic
from app.catalog.branch import WEIGHT_SUFFIXES
from app.downloads import notices
from app.downloads.state import FolderState, PlannedFile
from app.downloads.target import STATE_DIR_NAME
from app.paths import app_paths

INDEX_FILE = "downloads.json"
_index_lock = threading.Lock()


@dataclass(frozen=True)
class LocalModel:
    """One branch present on this machine."""

    repo_id: str
    branch: str | None  # None for HF cache snapshots no ref points at
    commit: str
    path: Path
    size_bytes: int  # the whole branch (what a complete download takes)
    complete: bool
    source: str  # "quantdesk" or "hf-cache"
    files: tuple[str, ...] = ()
    disk_bytes: int | None = None  # what is on disk now (None: the same as size_bytes)

    @property
    def on_disk(self) -> int:
        """Bytes this model takes on disk now (what deleting it frees)."""
        return self.size_bytes if self.disk_bytes is None else self.disk_bytes

    @property
    def missing_bytes(self) -> int:
        """Bytes still to download before the model is complete."""
        return 0 if self.complete else max(0, self.size_bytes - self.on_disk)


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache, read from the environment at call time (huggingface_hub reads
    ``HF_HOME``/``HF_HUB_CACHE`` once at import, which would pin whatever was set then)."""
    explicit = os.environ.get("HF_HUB_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    hf_home = os.environ.get("HF_HOME")
    if hf_home:
        return Path(hf_home).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "huggingface" / "hub"


def _index_path() -> Path:
    return app_paths().data_dir / INDEX_FILE


# A JSON string that looks like an absolute path (posix or Windows): what a damaged index still holds.
_PATH_STRING = re.compile(r'"((?:/|[A-Za-z]:\\\\)[^"\x00-\x1f]*)"')


def _salvage_folders(damaged: Path) -> list[str]:
    """Model folders named in a damaged index: every quoted absolute path that is still one of ours."""
    try:
        text = damaged.read_bytes().decode("utf-8", errors="replace")
    except OSError:
        return []
    found: list[str] = []
    for match in _PATH_STRING.finditer(text):
        candidate = match.group(1).replace("\\\\", "\\")
        if candidate not in found and (Path(candidate) / STATE_DIR_NAME).is_dir():
            found.append(candidate)
    return found


def _read_index() -> list[str]:
    """The indexed folders. A damaged index is set aside, the folders still named in it are recovered
    into a fresh one, and the user is told (through :mod:`notices`)."""
    path = _index_path()
    data, warning = read_json_store(path, what="The list of model folders (downloads.json)")
    if warning is None:
        return [p for p in (data or {}).get("folders", []) if isinstance(p, str)]
    aside = next(iter(sorted(path.parent.glob(path.name + ".corrupt-*"), reverse=True)), None)
    folders = _salvage_folders(aside) if aside is not None else []
    with contextlib.suppress(OSError):
        write_json_atomic(path, {"folders": folders})
    notices.add(f"{warning} {len(folders)} model folder(s) named in it were recovered.")
    return folders


def remember_folder(path: Path) -> None:
    """Add a model folder to the index (idempotent)."""
    with _index_lock:
        folders = _read_index()
        resolved = str(path.resolve())
        if resolved not in folders:
            folders.append(resolved)
            write_json_atomic(_index_path(), {"folders": folders})


def _indexed_folders() -> list[Path]:
    """The indexed folders that still exist; the index forgets the ones deleted by hand (a folder whose
    parent is missing too may sit on a drive that is not mounted now: it is kept)."""
    with _index_lock:
        folders = _read_index()
        present = [p for p in folders if Path(p).is_dir() or not Path(p).parent.is_dir()]
        if present != folders:
            with contextlib.suppress(OSError):
                write_json_atomic(_index_path(), {"folders": present})
    return [Path(p) for p in present]


def quantdesk_models(models_dir: Path | None = None) -> list[LocalModel]:
    """Every QuantDesk model folder (complete or not) in the models folder and the index."""
    root = models_dir or app_paths().models_dir
    candidates: list[Path] = []
    if root.is_dir():
        candidates.extend(sorted(p for p in root.iterdir() if p.is_dir()))
    candidates.extend(_indexed_folders())
    seen: set[Path] = set()
    models: list[LocalModel] = []
    for folder in candidates:
        with contextlib.suppress(OSError):
            key = folder.resolve()
            if key in seen:
                continue
            seen.add(key)
            model = folder_model(folder)
            if model is not None:
                models.append(model)
    return models


def folder_model(folder: Path) -> LocalModel | None:
    """The model in one QuantDesk folder; None if the folder is not one of ours."""
    state = FolderState(folder)
    marker = state.load_marker()
    if marker is not None:
        return LocalModel(
            marker.repo_id,
            marker.branch,
            marker.commit,
            folder,
            marker.size_bytes,
            True,
            "quantdesk",
            tuple(f.path for f in marker.files),
        )
    job = state.load_job()
    if job is None:
        return None
    return LocalModel(
        job.repo_id,
        job.branch or None,
        job.commit,
        folder,
        sum(f.size for f in job.files),
        False,
        "quantdesk",
        tuple(f.path for f in job.files),
        disk_bytes(folder),
    )


def disk_bytes(folder: Path) -> int:
    """Bytes of every file under ``folder`` (model files, ``.part`` files, records).

    A ``.part`` is reserved at its full size when its download starts, so it counts with the bytes its
    record says were received: what a person reads as "52 KiB of 250 KiB" is what arrived.
    """
    total = 0
    for path in folder.rglob("*"):
        with contextlib.suppress(OSError):
            if path.is_file() and not path.is_symlink():
                size = path.stat().st_size
                if path.suffix == ".part":
                    size = min(size, _received(path))
                total += size
    return total


def _received(part: Path) -> int:
    """Bytes received into a ``.part`` file according to its state record (its size when unreadable)."""
    record = part.with_name(part.name + ".json")
    try:
        data = json.loads(record.read_bytes().decode("utf-8"))
        done = int(data.get("bytes_done", 0))
    except (OSError, ValueError, TypeError, AttributeError):
        return part.stat().st_size
    return max(0, done)


def hf_cache_models(cache_dir: Path | None = None) -> list[LocalModel]:
    """Model snapshots in the Hugging Face cache, one per (revision, branch ref)."""
    try:
        from huggingface_hub import scan_cache_dir

        info = scan_cache_dir(cache_dir or hf_cache_dir())
    except Exception:  # no cache yet (CacheNotFound) or an unreadable one: nothing to list
        return []
    models: list[LocalModel] = []
    for repo in info.repos:
        if repo.repo_type != "model":
            continue
        for rev in repo.revisions:
            files = tuple(sorted(f.file_path.relative_to(rev.snapshot_path).as_posix() for f in rev.files))
            # A snapshot only holds files that finished downloading (the HF cache writes *.incomplete
            # in blobs/ first), but it may hold only some of a branch's files: it counts as a model when
            # it has weights; callers that need a whole branch check the list (see find_in_hf_cache).
            has_weights = any(name.lower().endswith(WEIGHT_SUFFIXES) for name in files)
            refs: list[str | None] = [*sorted(rev.refs)] or [None]
            for branch in refs:
                models.append(
                    LocalModel(
                        repo.repo_id,
                        branch,
                        rev.commit_hash,
                        rev.snapshot_path,
                        rev.size_on_disk,
                        has_weights,
                        "hf-cache",
                        files,
                    )
                )
    return models


def find_in_hf_cache(repo_id: str, commit: str, files: Iterable[PlannedFile]) -> Path | None:
    """The HF cache snapshot of ``repo_id@commit`` if it holds every one of ``files`` at its size."""
    try:
        from huggingface_hub import scan_cache_dir

        info = scan_cache_dir(hf_cache_dir())
    except Exception:
        return None
    wanted = list(files)
    for repo in info.repos:
        if repo.repo_type != "model" or repo.repo_id != repo_id:
            continue
        for rev in repo.revisions:
            if rev.commit_hash != commit:
                continue
            present = {
                f.file_path.relative_to(rev.snapshot_path).as_posix(): f.size_on_disk for f in rev.files
            }
            if all(present.get(f.path) == f.size for f in wanted):
                return rev.snapshot_path
    return None


def list_local_models(models_dir: Path | None = None) -> list[LocalModel]:
    """QuantDesk's folders first, then the HF cache."""
    return quantdesk_models(models_dir) + hf_cache_models()


def incomplete_downloads(models_dir: Path | None = None) -> list[LocalModel]:
    """Downloads that started but never completed (after a crash, pause or kill): resume candidates."""
    return [m for m in quantdesk_models(models_dir) if not m.complete]


def branch_states(repo_id: str, remote_commits: dict[str, str]) -> dict[str, str]:
    """Per branch of ``repo_id``: "downloaded", "update available" or "incomplete" (absent: not local).

    ``remote_commits`` maps branch names to the commit the Hub reports now.
    """
    states: dict[str, str] = {}
    rank = {"incomplete": 0, "update available": 1, "downloaded": 2}
    for model in list_local_models():
        if model.repo_id != repo_id or model.branch is None or model.branch not in remote_commits:
            continue
        if model.source == "hf-cache" and not model.complete:
            continue  # a few config files another tool cached are not a model
        if not model.complete:
            state = "incomplete"
        elif model.commit == remote_commits[model.branch]:
            state = "downloaded"
        else:
            state = "update available"
        if rank[state] > rank.get(states.get(model.branch, ""), -1):
            states[model.branch] = state
    return states
