"""Where a branch's files go, and the guard that keeps every write inside that folder.

File names come from the repo's tree, i.e. from whoever uploaded the repo: each one is validated
before anything is written, so a name such as ``../../.bashrc`` or ``C:\\x`` can never leave the folder.
"""

from __future__ import annotations

import errno
import re
from pathlib import Path, PurePosixPath

from app.errors import DiskFullError, TargetFolderError, UnsafeFilenameError
from app.paths import app_paths

# QuantDesk's own bookkeeping lives in this hidden sub-folder of a model folder (.part files, state
# records, the completion marker); a repo may not ship a file there.
STATE_DIR_NAME = ".quantdesk"
_DRIVE = re.compile(r"^[A-Za-z]:")
_MAX_NAME = 1024


def folder_name(repo_id: str, branch: str) -> str:
    """``org_name`` for main, ``org_name_branch`` otherwise (a '/' in a branch name becomes '_')."""
    org, name = repo_id.split("/", 1)
    base = f"{org}_{name}"
    return base if branch == "main" else f"{base}_{branch.replace('/', '_')}"


def default_target(repo_id: str, branch: str, models_dir: Path | None = None) -> Path:
    """The default model folder: ``<data dir>/models/<org>_<name>[_<branch>]``."""
    return (models_dir or app_paths().models_dir) / folder_name(repo_id, branch)


def validate_filename(name: str) -> str:
    """Return ``name`` if it is a safe relative posix path inside a model folder, else raise.

    Rejected: empty names, NUL/control characters, absolute paths, drive letters, backslashes (a path
    separator on Windows), ``.``/``..``/empty components, and QuantDesk's own state folder.
    """

    def unsafe(why: str) -> UnsafeFilenameError:
        return UnsafeFilenameError(
            f"The repo lists a file QuantDesk will not write: {name!r} ({why}).",
            "The repo may be malicious or broken; nothing was written for it.",
        )

    if not name or len(name) > _MAX_NAME:
        raise unsafe("empty or too long")
    if any(ord(c) < 32 for c in name):
        raise unsafe("control character in the name")
    if "\\" in name:
        raise unsafe("backslash")
    if name.startswith("/"):
        raise unsafe("absolute path")
    if _DRIVE.match(name):
        raise unsafe("drive letter")
    parts = name.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise unsafe("'..', '.' or empty path component")
    if parts[0] == STATE_DIR_NAME:
        raise unsafe("reserved folder name")
    return name


def safe_path(root: Path, name: str) -> Path:
    """``root / name`` after validation, double-checked to resolve inside ``root`` (symlinks included)."""
    validate_filename(name)
    candidate = root.joinpath(*PurePosixPath(name).parts)
    resolved_root = root.resolve()
    resolved = candidate.resolve()
    if resolved != resolved_root and resolved_root not in resolved.parents:
        raise UnsafeFilenameError(
            f"The repo file {name!r} would be written outside the model folder.",
            "Remove symbolic links from the model folder, or choose another folder.",
        )
    return candidate


def check_target(folder: Path) -> None:
    """Refuse, before anything is written, a model folder that cannot be one: a file, or a path under
    a file. (Permissions and read-only file systems show up at the first write: :func:`folder_error`.)"""
    if folder.exists() and not folder.is_dir():
        raise TargetFolderError(
            f"{folder} is a file, not a folder.", "Choose a folder (new or empty) for the model with --dir."
        )
    for parent in folder.parents:
        if parent.exists():
            if not parent.is_dir():
                raise TargetFolderError(
                    f"The model folder {folder} cannot be created: {parent} is a file.",
                    "Choose a folder (new or empty) for the model with --dir.",
                )
            return


# errno -> what happened, in words (the hint is the same for all: choose another folder).
_WRITE_ERRORS = {
    errno.EROFS: "is on a read-only file system",
    errno.EACCES: "is not writable (permission denied)",
    errno.EPERM: "is not writable (operation not permitted)",
    errno.ENOTDIR: "cannot be created: part of its path is a file",
    errno.EEXIST: "cannot be created: a file of that name is in the way",
    errno.ENAMETOOLONG: "has a name that is too long",
}


def folder_error(folder: Path, exc: OSError) -> DiskFullError | TargetFolderError:
    """The one-sentence error for an OS failure creating or writing a model folder."""
    if exc.errno == errno.ENOSPC:
        return DiskFullError(
            f"The disk holding {folder} is full.", "Free some space or choose another folder with --dir."
        )
    what = _WRITE_ERRORS.get(exc.errno or 0, f"cannot be written ({exc.strerror or exc})")
    return TargetFolderError(
        f"The model folder {folder} {what}.", "Choose another folder with --dir.", detail=str(exc)
    )
