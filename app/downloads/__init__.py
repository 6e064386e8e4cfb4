"""Crash-safe branch downloads (Qt-free): resumable transfers, verification, progress, local models.

Entry points: :class:`~app.downloads.manager.BranchDownload` (one branch into a model folder) and
:mod:`app.downloads.registry` (what is on this machine).
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
