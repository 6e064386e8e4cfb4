"""The Models page's Download action: a branch marked "Doesn't fit" asks first (No is the default).

The page hands it the repo and the clicked branch's row; :attr:`DownloadAction.requested` carries the
download on to the window's downloads controller.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QMessageBox, QWidget

from app.catalog.fit import FitStatus
from app.catalog.table import BranchRow
from app.units import format_size


def confirm_unfit_download(parent: QWidget, row: BranchRow) -> bool:
    """Ask before downloading a branch marked "Doesn't fit" (No is the default)."""
    answer = QMessageBox.warning(
        parent,
        "Download a branch that doesn't fit?",
        f"{row.info.branch} ({format_size(row.info.size_bytes)}) doesn't fit this machine: "
        f"{row.fit.message}\n\nDownload it anyway (e.g. to run it elsewhere)?",
        QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
        QMessageBox.StandardButton.No,
    )
    return answer == QMessageBox.StandardButton.Yes


class DownloadAction(QObject):
    """Turns a Download click into a download request, after a confirmation when the branch won't fit."""

    requested = Signal(str, str)  # repo_id, branch

    def __init__(self, dialog_parent: QWidget) -> None:
        super().__init__(dialog_parent)
        self._dialog_parent = dialog_parent
        # Asked before a "Doesn't fit" branch is downloaded (tests replace it).
        self.confirm_unfit_download: Callable[[QWidget, BranchRow], bool] = confirm_unfit_download

    def request(self, repo_id: str, branch: str, row: BranchRow | None) -> None:
        """Download ``branch`` of ``repo_id`` (``row``: its table row, for the fit verdict)."""
        unfit = row is not None and row.fit.status is FitStatus.NO_FIT
        if unfit and row is not None and not self.confirm_unfit_download(self._dialog_parent, row):
            return
        self.requested.emit(repo_id, branch)
