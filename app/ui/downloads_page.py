"""The Downloads page: the queue with total and per-file progress, speed, ETA and state, and the
pause / resume / cancel / retry buttons; unfinished downloads of the last session are offered for resume.

What the page says follows what happens: retries as they happen ("retrying (2/7) after …"), "stalled"
when no byte arrived for a while (instead of an ETA computed from a dying average), and a download
whose folder was deleted by hand shows as such (the page re-checks the disk when it is shown).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, QSize, Qt, QTimer, QUrl, Signal
from PySide6.QtGui import QDesktopServices, QPainter, QShowEvent
from PySide6.QtWidgets import (
    QAbstractButton,
    QApplication,
    QFrame,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionProgressBar,
    QStyleOptionViewItem,
    QToolButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.catalog.fit import FitStatus
from app.ui import theme
from app.ui.download_status import format_eta, format_speed, running_detail
from app.ui.downloads_controller import ACTIVE, RESUMABLE, DownloadJob, DownloadsController, JobState
from app.units import format_size

FRACTION_ROLE = Qt.ItemDataRole.UserRole + 10
# Shown by main_window (status bar) and the tests through this page.
__all__ = ["CancelChoice", "DownloadCard", "DownloadsPage", "format_eta", "format_speed", "running_detail"]


class CancelChoice:
    """The answers of the cancel dialog."""

    KEEP_DOWNLOADING = 0
    CANCEL_KEEP_FILES = 1
    CANCEL_DELETE = 2


def cancel_box(parent: QWidget, job: DownloadJob) -> tuple[QMessageBox, dict[QAbstractButton, int]]:
    """The cancel dialog and what each button means. The default is the choice that loses nothing and
    fits the state: "Keep downloading" while it runs, "Cancel, keep files" once it has stopped (a failed
    or paused download is not downloading: keeping it going is not an option to offer first)."""
    box = QMessageBox(parent)
    box.setIcon(QMessageBox.Icon.Question)
    box.setWindowTitle("Cancel download")
    box.setText(f"Cancel the download of {job.repo_id} : {job.branch}?")
    box.setInformativeText(
        "Delete partial files? Deleting removes what this download wrote (and its folder, if it made "
        "it); keeping them lets a later download continue where this one stopped."
    )
    delete = box.addButton("Cancel and delete partial files", QMessageBox.ButtonRole.DestructiveRole)
    keep = box.addButton("Cancel, keep files", QMessageBox.ButtonRole.AcceptRole)
    running = job.state in ACTIVE or job.state is JobState.QUEUED
    back = box.addButton("Keep downloading" if running else "Don't cancel", QMessageBox.ButtonRole.RejectRole)
    box.setDefaultButton(back if running else keep)
    box.setEscapeButton(back)
    return box, {
        delete: CancelChoice.CANCEL_DELETE,
        keep: CancelChoice.CANCEL_KEEP_FILES,
        back: CancelChoice.KEEP_DOWNLOADING,
    }


def ask_cancel(parent: QWidget, job: DownloadJob) -> int:
    """Ask whether to cancel and whether to delete the partial files."""
    box, choices = cancel_box(parent, job)
    box.exec()
    clicked = box.clickedButton()
    return choices.get(clicked, CancelChoice.KEEP_DOWNLOADING) if clicked else CancelChoice.KEEP_DOWNLOADING


class ProgressDelegate(QStyledItemDelegate):
    """Paints a progress bar from :data:`FRACTION_ROLE` (0..1)."""

    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex) -> QSize:
        """Tall enough for the bar's "100 %" label (a row sized for plain text clipped it)."""
        hint = super().sizeHint(option, index)
        return QSize(hint.width(), max(hint.height(), option.fontMetrics.height() + 8))

    def paint(
        self, painter: QPainter, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex
    ) -> None:
        fraction = index.data(FRACTION_ROLE)
        if not isinstance(fraction, float):
            super().paint(painter, option, index)
            return
        bar = QStyleOptionProgressBar()
        bar.rect = option.rect.adjusted(2, 1, -2, -1)
        bar.minimum, bar.maximum = 0, 1000
        bar.progress = int(fraction * 1000)
        bar.text = f"{fraction * 100:.0f} %"
        bar.textVisible = True
        bar.state = QStyle.StateFlag.State_Enabled | QStyle.StateFlag.State_Horizontal
        bar.palette = option.palette
        style = option.widget.style() if option.widget else QApplication.style()
        style.drawControl(QStyle.ControlElement.CE_ProgressBar, bar, painter, option.widget)


def progress_column_width(widget: QWidget) -> int:
    """Wide enough for the bar plus its widest label ("100 %") in the widget's font, with the style's
    own text margins: a fixed 160 px clipped the label under larger fonts and some styles."""
    metrics = widget.fontMetrics()
    return max(160, metrics.horizontalAdvance("100 %") * 3 + 24)


class DownloadCard(QFrame):
    """One download: title, state, total progress, speed/ETA or error, buttons, and its files."""

    def __init__(self, page: DownloadsPage, job: DownloadJob) -> None:
        super().__init__()
        self.page = page
        self.key = job.key
        self.setObjectName("downloadCard")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(12, 8, 12, 8)
        layout.setSpacing(4)

        top = QHBoxLayout()
        self.title = QLabel(f"<b>{job.repo_id}</b> : {job.branch}")
        self.state = QLabel()
        font = self.state.font()
        font.setBold(True)
        self.state.setFont(font)
        top.addWidget(self.title)
        top.addSpacing(10)
        top.addWidget(self.state)
        top.addStretch(1)
        self.pause_button = QPushButton("Pause")
        self.resume_button = QPushButton("Resume")
        self.retry_button = QPushButton("Retry")
        self.cancel_button = QPushButton("Cancel")
        self.open_button = QPushButton("Open folder")
        self.remove_button = QToolButton()
        self.remove_button.setText("✕")
        self.remove_button.setToolTip("Remove from the list (files stay)")
        self.pause_button.clicked.connect(lambda: page.controller.pause(self.key))
        self.resume_button.clicked.connect(lambda: page.controller.resume(self.key))
        self.retry_button.clicked.connect(lambda: page.controller.retry(self.key))
        self.cancel_button.clicked.connect(lambda: page.cancel(self.key))
        self.open_button.clicked.connect(lambda: page.open_folder(self.key))
        self.remove_button.clicked.connect(lambda: page.controller.remove(self.key))
        for button in (
            self.pause_button,
            self.resume_button,
            self.retry_button,
            self.cancel_button,
            self.open_button,
            self.remove_button,
        ):
            top.addWidget(button)
        layout.addLayout(top)

        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        self.bar.setTextVisible(True)
        layout.addWidget(self.bar)

        bottom = QHBoxLayout()
        self.detail = QLabel()
        self.detail.setWordWrap(True)
        self.detail.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.detail.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.files_toggle = QToolButton()
        self.files_toggle.setCheckable(True)
        self.files_toggle.setText("Files")
        self.files_toggle.setArrowType(Qt.ArrowType.RightArrow)
        self.files_toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.files_toggle.setAutoRaise(True)
        self.files_toggle.toggled.connect(self._toggle_files)
        bottom.addWidget(self.detail, 1)
        bottom.addWidget(self.files_toggle)
        layout.addLayout(bottom)

        self.files: QTreeWidget | None = None  # built when first opened: most cards never show it
        self._file_items: dict[str, QTreeWidgetItem] = {}
        self._job = job
        self._layout = layout
        self.update_from(job)

    def _toggle_files(self, shown: bool) -> None:
        self.files_toggle.setArrowType(Qt.ArrowType.DownArrow if shown else Qt.ArrowType.RightArrow)
        if shown and self.files is None:
            self.files = self._build_files()
            self._layout.addWidget(self.files)
            if self._job.progress:
                self._update_files(self._job)
        if self.files is not None:
            self.files.setVisible(shown)

    def _build_files(self) -> QTreeWidget:
        files = QTreeWidget()
        files.setColumnCount(5)
        files.setHeaderLabels(["File", "Size", "Progress", "Speed", "State"])
        files.setRootIsDecorated(False)
        files.setUniformRowHeights(True)
        files.setItemDelegateForColumn(2, ProgressDelegate(files))
        header = files.header()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        header.setStretchLastSection(False)
        header.resizeSection(2, progress_column_width(files))
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.Fixed)
        metrics = files.fontMetrics()
        header.resizeSection(1, metrics.horizontalAdvance("1023.99 MiB") + 16)
        header.resizeSection(3, metrics.horizontalAdvance("1023.99 MiB/s") + 16)
        header.resizeSection(4, 190)  # room for "running · 8 connections"
        return files

    def _fit_files_height(self) -> None:
        assert self.files is not None
        rows = self.files.topLevelItemCount()
        row = self.files.sizeHintForRow(0) if rows else self.fontMetrics().height() + 4
        height = self.files.header().height() + row * max(rows, 1) + 2 * self.files.frameWidth() + 2
        self.files.setFixedHeight(min(height, 260))

    def update_from(self, job: DownloadJob) -> None:
        """Refresh every field from the job."""
        self._job = job
        state = job.state
        color = {
            JobState.DONE: theme.badge_colors(FitStatus.FITS)[0],
            JobState.FAILED: theme.error_color(),
            JobState.INTERRUPTED: theme.warning_color(),
            JobState.PAUSED: theme.warning_color(),
            JobState.GONE: theme.muted_text(),
        }.get(state, self.palette().color(self.foregroundRole()))
        self.state.setText(state.value)
        self.state.setStyleSheet(f"color: {color.name()};")
        self.bar.setValue(int(job.fraction * 1000))
        total = job.total_bytes
        done = job.progress.done_bytes if job.progress else (total if state is JobState.DONE else 0)
        if total:
            self.bar.setFormat(f"{job.fraction * 100:.0f} %  ·  {format_size(done)} of {format_size(total)}")
        else:
            self.bar.setFormat("%p %" if state is not JobState.INTERRUPTED else "size unknown")
        self.detail.setStyleSheet("")
        if job.error is not None:
            self.detail.setText(job.error.message)
            self.detail.setToolTip(job.error.detail or job.error.message)
            self.detail.setStyleSheet(f"color: {theme.error_color().name()};")
        elif state in (JobState.RUNNING, JobState.VERIFYING) and job.progress:
            self.detail.setText(running_detail(job))
        elif state is JobState.DONE:
            self.detail.setText(f"Saved in {job.path}" if job.path else "Complete.")
        elif state is JobState.INTERRUPTED:
            self.detail.setText(
                "This download did not finish in the last session. Resume continues where it stopped."
            )
        elif state is JobState.PAUSED:
            self.detail.setText("Paused. Resume continues where it stopped.")
        elif state is JobState.CANCELLED:
            self.detail.setText("Cancelled.")
        elif state is JobState.GONE:
            self.detail.setText(
                "Its folder was deleted outside QuantDesk: nothing is left to resume. "
                "Download again starts from zero."
            )
        elif state is JobState.QUEUED:
            self.detail.setText("Waiting for a free download slot.")
        else:
            self.detail.setText(state.value + "…")
        self.pause_button.setVisible(
            state in (JobState.QUEUED, JobState.STARTING, JobState.RUNNING, JobState.VERIFYING)
        )
        self.resume_button.setVisible(state in (JobState.PAUSED, JobState.INTERRUPTED, JobState.CANCELLED))
        self.retry_button.setVisible(state in (JobState.FAILED, JobState.GONE))
        self.retry_button.setText("Download again" if state is JobState.GONE else "Retry")
        self.cancel_button.setVisible(
            state not in (JobState.DONE, JobState.CANCELLED, JobState.CANCELLING, JobState.GONE)
        )
        self.open_button.setVisible(state is JobState.DONE and job.path is not None)
        self.remove_button.setVisible(state not in ACTIVE and state is not JobState.QUEUED)
        if job.progress:
            self.files_toggle.setText(f"Files ({len(job.progress.files)})")
            if self.files is not None and self.files.isVisible():
                self._update_files(job)

    def _update_files(self, job: DownloadJob) -> None:
        assert job.progress is not None and self.files is not None
        for f in job.progress.files:
            item = self._file_items.get(f.path)
            if item is None:
                item = QTreeWidgetItem([f.path, format_size(f.size), "", "", ""])
                item.setTextAlignment(1, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self._file_items[f.path] = item
                self.files.addTopLevelItem(item)
            fraction = f.done_bytes / f.size if f.size else 1.0
            item.setData(2, FRACTION_ROLE, float(min(1.0, fraction)))
            item.setText(3, format_speed(f.speed_bps))
            state = f.message or str(f.status)
            if f.connections > 1:
                state += f" · {f.connections} connections"
            item.setText(4, state)
            item.setToolTip(4, state)
        self._fit_files_height()


class DownloadsPage(QWidget):
    """The queue."""

    count_changed = Signal(int)  # downloads not yet complete (for the sidebar)

    def __init__(self, controller: DownloadsController, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.controller = controller
        self.cards: dict[str, DownloadCard] = {}
        self.confirm_cancel: Callable[[QWidget, DownloadJob], int] = ask_cancel
        layout = QVBoxLayout(self)
        layout.setContentsMargins(12, 10, 12, 6)
        title = QLabel("Downloads")
        font = title.font()
        font.setPointSizeF(font.pointSizeF() * 1.3)
        font.setBold(True)
        title.setFont(font)
        layout.addWidget(title)

        self.resume_banner = QFrame()
        self.resume_banner.setFrameShape(QFrame.Shape.StyledPanel)
        banner = QHBoxLayout(self.resume_banner)
        self.resume_label = QLabel()
        self.resume_all_button = QPushButton("Resume all")
        self.resume_all_button.clicked.connect(self.controller.resume_all_interrupted)
        banner.addWidget(self.resume_label, 1)
        banner.addWidget(self.resume_all_button)
        self.resume_banner.hide()
        layout.addWidget(self.resume_banner)

        self.empty = QLabel("No downloads yet. Pick a branch on the Models page and press Download.")
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty.setStyleSheet(f"color: {theme.muted_text().name()};")
        layout.addWidget(self.empty, 1)

        self.scroll_area = QScrollArea()
        self.scroll_area.setWidgetResizable(True)
        self.scroll_area.setFrameShape(QFrame.Shape.NoFrame)
        body = QWidget()
        self.list_layout = QVBoxLayout(body)
        self.list_layout.setContentsMargins(0, 0, 0, 0)
        self.list_layout.setSpacing(8)
        self.list_layout.addStretch(1)
        self.scroll_area.setWidget(body)
        layout.addWidget(self.scroll_area, 1)
        self.scroll_area.hide()

        controller.job_added.connect(self._added)
        controller.job_changed.connect(self._changed)
        controller.job_removed.connect(self._removed)
        for key in controller.jobs:
            self._added(key)
        # Progress events stop when bytes stop: a tick refreshes running cards so "stalled" appears.
        self._tick = QTimer(self)
        self._tick.setInterval(1000)
        self._tick.timeout.connect(self._refresh_running)
        self._tick.start()

    def showEvent(self, event: QShowEvent) -> None:
        """Re-check the folders of stopped downloads: one deleted by hand shows as gone."""
        super().showEvent(event)
        self.controller.sync_with_disk()

    def _refresh_running(self) -> None:
        for key, card in self.cards.items():
            job = self.controller.job(key)
            if job is not None and job.state is JobState.RUNNING:
                card.update_from(job)

    # -- commands -------------------------------------------------------------------------------------

    def cancel(self, key: str) -> None:
        """Ask, then cancel (optionally deleting the partial files)."""
        job = self.controller.job(key)
        if job is None:
            return
        choice = self.confirm_cancel(self, job)
        if choice != CancelChoice.KEEP_DOWNLOADING:
            self.controller.cancel(key, delete_partial=choice == CancelChoice.CANCEL_DELETE)

    def open_folder(self, key: str) -> None:
        """Show the finished model folder in the file manager."""
        job = self.controller.job(key)
        if job is not None and job.path is not None:
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(Path(job.path))))

    # -- updates --------------------------------------------------------------------------------------

    def _added(self, key: str) -> None:
        job = self.controller.job(key)
        if job is None or key in self.cards:
            return
        card = DownloadCard(self, job)
        self.cards[key] = card
        self.list_layout.insertWidget(self.list_layout.count() - 1, card)
        self._refresh_summary()

    def _changed(self, key: str) -> None:
        job = self.controller.job(key)
        card = self.cards.get(key)
        if job is not None and card is not None:
            card.update_from(job)
        self._refresh_summary()

    def _removed(self, key: str) -> None:
        card = self.cards.pop(key, None)
        if card is not None:
            card.setParent(None)
            card.deleteLater()
        self._refresh_summary()

    def _refresh_summary(self) -> None:
        jobs = list(self.controller.jobs.values())
        self.empty.setVisible(not jobs)
        self.scroll_area.setVisible(bool(jobs))
        interrupted = [j for j in jobs if j.state is JobState.INTERRUPTED]
        if interrupted:
            count = len(interrupted)
            self.resume_label.setText(
                f"{count} download{'s' if count != 1 else ''} did not finish last time. "
                "Resume continues from the bytes already on disk."
            )
        self.resume_banner.setVisible(bool(interrupted))
        pending = sum(
            1 for j in jobs if j.state in ACTIVE or j.state is JobState.QUEUED or j.state in RESUMABLE
        )
        self.count_changed.emit(pending)
