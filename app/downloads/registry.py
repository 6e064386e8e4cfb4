"""Local models: what QuantDesk downloaded (complete or not) and what the Hugging Face cache holds.

QuantDesk's folders are found by scanning the models folder plus an index of folders chosen with
``--dir`` elsewhere (written when a download starts, so an interrupted one is found after a crash).
A folder counts as complete only with its completion marker; a job record alone means "incomplete".
Models fetched by another tool into the HF cache (``scan_cache_dir``) are listed with source
``hf-cache``, so QuantDesk does not fetch them a second time.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from app.atomic_files import write_json_atomic
from app.catalog.branch import WEIGHT_SUFFIXES
from app.downloads.state import FolderState, PlannedFile, read_json
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
    size_bytes: int
    complete: bool
    source: str  # "quantdesk" or "hf-cache"
    files: tuple[str, ...] = ()


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


def remember_folder(path: Path) -> None:
    """Add a model folder to the index (idempotent)."""
    with _index_lock:
        data = read_json(_index_path()) or {}
        folders = [str(p) for p in data.get("folders", []) if isinstance(p, str)]
        resolved = str(path.resolve())
        if resolved not in folders:
            folders.append(resolved)
            write_json_atomic(_index_path(), {"folders": folders})


def _indexed_folders() -> list[Path]:
    data = read_json(_index_path()) or {}
    return [Path(p) for p in data.get("folders", []) if isinstance(p, str)]


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
        job.branch,
        job.commit,
        folder,
        sum(f.size for f in job.files),
        False,
        "quantdesk",
        tuple(f.path for f in job.files),
    )


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
