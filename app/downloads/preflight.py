"""Checks before a download writes anything: is the folder free of another model, is there room.

Both refuse with one sentence that says what is wrong and what to do; neither writes to disk.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from app import errors
from app.downloads.state import FolderState
from app.downloads.target import STATE_DIR_NAME

# Free space kept beyond the download: 2 % of it, at least 8 MiB (file-system overhead, the records),
# at most 256 MiB (a fixed 256 MiB refused a 23 MiB download with 40 MiB free).
MARGIN_FRACTION = 0.02
MIN_MARGIN_BYTES = 8 * 1024 * 1024
MAX_MARGIN_BYTES = 256 * 1024 * 1024


class DiskUsage(Protocol):
    """What :func:`shutil.disk_usage` returns (only ``free`` is used)."""

    @property
    def free(self) -> int:
        """Free bytes for this user."""


def format_bytes(n: float) -> str:
    """Human size with binary units (the numbers in disk-space messages)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def disk_margin(remaining: int) -> int:
    """Free space to keep beyond ``remaining`` bytes of download."""
    return min(MAX_MARGIN_BYTES, max(MIN_MARGIN_BYTES, int(remaining * MARGIN_FRACTION)))


def check_free_space(target: Path, remaining: int, free: int, margin: int | None = None) -> None:
    """Refuse a download of ``remaining`` bytes into ``target`` when ``free`` bytes are not enough
    (with ``margin``, by default :func:`disk_margin`); the sentence gives every number."""
    if remaining <= 0:
        return
    keep = disk_margin(remaining) if margin is None else margin
    if free < remaining + keep:
        raise errors.DiskFullError(
            f"Not enough disk space in {target}: the download needs {format_bytes(remaining)} more "
            f"(+ {format_bytes(keep)} margin) but only {format_bytes(free)} is free.",
            "Free some space or choose another folder with --dir.",
        )


def existing_ancestor(path: Path) -> Path:
    """``path`` or its nearest existing parent (where free space is measured)."""
    probe = path
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    return probe


def check_owner(folder: FolderState, repo_id: str, branch: str) -> None:
    """Refuse a folder that holds another model (repo or branch), or files QuantDesk did not write:
    downloading there would mix two models (it used to overwrite the other one, exit 0)."""
    target = folder.root
    if not target.is_dir():
        return
    for record in (folder.load_marker(), folder.load_job()):
        if record is None:
            continue
        same_branch = record.branch in (branch, "")  # "": a rebuilt record whose branch is unknown
        if record.repo_id != repo_id or not same_branch:
            raise errors.FolderConflictError(
                f"{target} already holds {record.repo_id} : {record.branch or '?'}; "
                f"downloading {repo_id} : {branch} there would mix two models.",
                "Choose another folder with --dir, or delete that model first.",
            )
    if (target / STATE_DIR_NAME).is_dir():
        return
    foreign = sorted(p.name for p in target.iterdir())
    if foreign:
        raise errors.FolderConflictError(
            f"{target} already holds files QuantDesk did not download ({', '.join(foreign[:3])}"
            f"{', …' if len(foreign) > 3 else ''}).",
            "Choose a new or empty folder with --dir.",
        )
