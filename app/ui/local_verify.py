"""The Local models page's "Verify" action: re-hash a model on a worker with progress, then offer to
repair it (re-fetch only the damaged files, same commit) after a confirmation.

The hashing and the repair are the core's (:mod:`app.downloads.verify`); this panel only runs them off
the GUI thread and shows how far they got: a progress bar, the file being read, and a Cancel button.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QWidget,
)

from app.ui.error_center import ErrorCenter
from app.ui.workers import Worker, start_worker
from app.units import format_size

if TYPE_CHECKING:
    from app.downloads.manager import DownloadResult
    from app.downloads.progress import DownloadProgress
    from app.downloads.registry import LocalModel
    from app.downloads.verify import VerifyReport


def _verify(
    model: LocalModel, stop: threading.Event, report: Callable[[int, int, str], None]
) -> VerifyReport:
    from app.downloads.verify import verify_folder

    return verify_folder(model.path, on_progress=report, stop=stop)


def _repair(report: VerifyReport, on_progress: Callable[[DownloadProgress], None]) -> DownloadResult:
    from app.downloads.verify import repair_folder

    return repair_folder(report, on_progress=on_progress)


def confirm_repair(parent: QWidget, report: VerifyReport) -> bool:
    """Ask before re-fetching the damaged files (Yes is the default: nothing is lost either way)."""
    size = sum(c.size for c in report.bad)
    answer = QMessageBox.question(
        parent,
        "Repair model",
        f"{report.summary()}\n\nRe-fetch {len(report.bad)} file(s) ({format_size(size)}) from the Hub? "
        "Each damaged file is replaced only once its new copy is verified.",
        QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
        QMessageBox.StandardButton.Yes,
    )
    return answer == QMessageBox.StandardButton.Yes


class _Bridge(QObject):
    """Carries progress from the worker thread to the GUI thread."""

    hashed = Signal(int, int, str)  # done bytes, total bytes, file
    fetched = Signal(object)  # DownloadProgress


class VerifyPanel(QWidget):
    """A progress row under the table, shown while a model is verified or repaired."""

    finished = Signal(str)  # the sentence that ended it (also shown in the panel)
    repaired = Signal()

    def __init__(self, errors: ErrorCenter, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.errors = errors
        self.confirm_repair: Callable[[QWidget, VerifyReport], bool] = confirm_repair
        self.report: VerifyReport | None = None
        self._stop = threading.Event()
        self._worker: Worker[Any] | None = None
        self._bridge = _Bridge(self)
        self._bridge.hashed.connect(self._hashed)
        self._bridge.fetched.connect(self._fetched)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        self.bar.setMinimumWidth(self.fontMetrics().horizontalAdvance("x") * 60)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self._stop.set)
        layout.addWidget(self.label, 1)
        layout.addWidget(self.bar, 1)
        layout.addWidget(self.cancel_button)
        self.hide()

    @property
    def busy(self) -> bool:
        """Whether a verification or repair runs now."""
        return self._worker is not None

    def start(self, model: LocalModel) -> None:
        """Verify ``model`` on a worker; a damaged one is offered for repair."""
        if self.busy:
            return
        self._stop.clear()
        self.report = None
        self.label.setText(f"Verifying {model.repo_id} : {model.branch}…")
        self.bar.setValue(0)
        self.bar.setVisible(True)
        self.cancel_button.setVisible(True)
        self.show()
        bridge = self._bridge
        self._worker = start_worker(
            _verify,
            model,
            self._stop,
            lambda done, total, name: bridge.hashed.emit(done, total, name),
            connect={"returned": self._verified, "errored": self._errored},
        )

    def _hashed(self, done: int, total: int, name: str) -> None:
        self.bar.setValue(int(1000 * done / total) if total else 1000)
        self.bar.setFormat(f"%p %  ·  {format_size(done)} of {format_size(total)}")
        self.bar.setToolTip(name)

    def _fetched(self, progress: DownloadProgress) -> None:
        self.bar.setValue(int(progress.fraction * 1000))
        self.bar.setFormat(
            f"%p %  ·  {format_size(progress.done_bytes)} of {format_size(progress.total_bytes)}"
        )

    def _verified(self, report: VerifyReport) -> None:
        self._worker = None
        self.report = report
        if report.ok:
            self._end(report.summary())
            return
        if not self.confirm_repair(self.window(), report):
            self._end(f"{report.summary()} Not repaired: Verify again to repair it later.")
            return
        self.label.setText(f"Repairing {len(report.bad)} file(s)…")
        self.cancel_button.setVisible(False)  # a repair is a download: it resumes if interrupted
        bridge = self._bridge
        self._worker = start_worker(
            _repair,
            report,
            bridge.fetched.emit,
            connect={"returned": self._repaired, "errored": self._errored},
        )

    def _repaired(self, result: DownloadResult) -> None:
        self._worker = None
        self._end(f"Repaired {len(result.fetched_files)} file(s) of {result.repo_id} : {result.branch}.")
        self.repaired.emit()

    def _errored(self, exc: BaseException) -> None:
        self._worker = None
        self.errors.report(exc, "verifying a model")
        self._end("Verification did not finish.")

    def _end(self, sentence: str) -> None:
        self.cancel_button.setVisible(False)
        self.bar.setVisible(False)  # the sentence says how it ended
        self.label.setText(sentence)
        self.label.setToolTip(sentence)
        self.finished.emit(sentence)
