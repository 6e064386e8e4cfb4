"""Crash-safe branch downloads (Qt-free): resumable transfers, verification, progress, local models.

Entry points: :class:`~app.downloads.manager.BranchDownload` (one branch into a model folder),
:mod:`app.downloads.registry` (what is on this machine), :mod:`app.downloads.verify` (re-hash and
repair a finished folder) and :mod:`app.downloads.cleanup` (cancel-and-delete). A folder has one writer
(:mod:`app.downloads.lock`) and one model (:mod:`app.downloads.preflight`); damaged records are set aside
and what they held recovered, with a sentence for the user in :mod:`app.downloads.notices`.
"""

from app.downloads.manager import BranchDownload, DownloadOptions, DownloadResult, Outcome, UpdateInfo
from app.downloads.progress import DownloadProgress, FileProgress, FileStatus

__all__ = [
    "BranchDownload",
    "DownloadOptions",
    "DownloadProgress",
    "DownloadResult",
    "FileProgress",
    "FileStatus",
    "Outcome",
    "UpdateInfo",
]
