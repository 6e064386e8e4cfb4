"""The branch table: a Qt item model over the catalog core's :func:`app.catalog.table.evaluate`.

The model keeps the fetched :class:`BranchInfo` tuple; context length, cache type and hardware are
parameters, and changing one re-evaluates the rows from those cached facts (pure computation, no
network). Cells carry display text, a sort key (:data:`SORT_ROLE`), tooltips with the core's reasons,
and for badge columns the :class:`FitStatus` (:data:`FIT_ROLE`) that
:class:`~app.ui.models.branch_delegates.BadgeDelegate` paints. Columns are in
:mod:`app.ui.models.branch_columns`, the words of the cells in :mod:`app.ui.models.branch_texts`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QObject, QPersistentModelIndex, Qt, Signal
from PySide6.QtGui import QColor, QFont

from app.catalog.branch import BranchInfo
from app.catalog.fit import FIT_ORDER, FitStatus
from app.catalog.measured import MeasuredPeak
from app.catalog.table import BranchRow, evaluate
from app.catalog.vram import CacheType
from app.hardware import Hardware
from app.ui import theme
from app.ui.models.branch_columns import Column, branch_columns
from app.ui.models.branch_texts import (
    backends_text,
    backends_tooltip,
    dash,
    memory_text,
    parts_lines,
    split_lines,
)
from app.units import format_size

SORT_ROLE = Qt.ItemDataRole.UserRole + 1
FIT_ROLE = Qt.ItemDataRole.UserRole + 2
BUTTON_ROLE = Qt.ItemDataRole.UserRole + 3  # (label, enabled) of an action cell
BRANCH_ROLE = Qt.ItemDataRole.UserRole + 4  # the branch name of the row

Index = QModelIndex | QPersistentModelIndex  # what Qt hands a model or delegate


class LocalState(StrEnum):
    """A branch's state on this machine, as the Download column shows it."""

    NONE = ""
    QUEUED = "Queued"
    DOWNLOADING = "Downloading"
    PAUSED = "Paused"
    FAILED = "Failed"
    INCOMPLETE = "Incomplete"
    DOWNLOADED = "Downloaded"
    UPDATE = "Update available"


@dataclass(frozen=True)
class LocalInfo:
    """What the downloads side knows about one branch."""

    state: LocalState
    commit: str = ""
    fraction: float = 0.0
    message: str = ""


def fit_status(value: object) -> FitStatus | None:
    """A :data:`FIT_ROLE` value back as a FitStatus (Qt hands a StrEnum back as a plain str)."""
    if isinstance(value, str):
        try:
            return FitStatus(value)
        except ValueError:
            return None
    return None


class BranchTableModel(QAbstractTableModel):
    """Rows of :class:`BranchRow`, recomputed from cached facts when planning parameters change."""

    download_requested = Signal(str)  # branch name

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.repo_id = ""
        self._branches: tuple[BranchInfo, ...] = ()
        self._rows: list[BranchRow] = []
        self._context: int | None = None
        self._prompt: int | None = None
        self._cache = CacheType.FP16
        self._measurements: list[MeasuredPeak] = []
        self._hardware: Hardware | None = None
        self._local: dict[str, LocalInfo] = {}
        self._columns = branch_columns()
        self._memo: dict[tuple[int, int, int], Any] = {}

    # -- inputs ---------------------------------------------------------------------------------------

    @property
    def rows(self) -> list[BranchRow]:
        """The evaluated rows in source order."""
        return self._rows

    @property
    def columns(self) -> list[Column]:
        """The current columns."""
        return self._columns

    @property
    def hardware(self) -> Hardware | None:
        """The hardware the fit is computed for (None until detected)."""
        return self._hardware

    @property
    def context(self) -> int | None:
        """The requested context (None: each model's own maximum)."""
        return self._context

    @property
    def cache_type(self) -> CacheType:
        """The requested KV cache type."""
        return self._cache

    def column_index(self, key: str) -> int:
        """The index of the column with ``key``; -1 if absent."""
        return next((i for i, c in enumerate(self._columns) if c.key == key), -1)

    def set_branches(self, repo_id: str, branches: tuple[BranchInfo, ...]) -> None:
        """A new (or refreshed) catalog."""
        self.beginResetModel()
        self._memo.clear()
        self.repo_id = repo_id
        self._branches = branches
        self._rows = self._evaluate()
        self.endResetModel()

    @property
    def prompt(self) -> int | None:
        """The requested longest prompt (None: a default share of each context)."""
        return self._prompt

    def set_planning(self, context: int | None, cache: CacheType, prompt: int | None = None) -> None:
        """Change context length, cache type and longest prompt: memory and fit update in place,
        without the network."""
        if (context, cache, prompt) == (self._context, self._cache, self._prompt):
            return
        self._context, self._cache, self._prompt = context, cache, prompt
        self._refresh_cells()

    def set_measurements(self, measurements: list[MeasuredPeak]) -> None:
        """The user's own measurements (read off the GUI thread): shown and used to correct estimates."""
        if measurements == self._measurements:
            return
        self._measurements = list(measurements)
        # A reset, not a dataChanged: the page re-fits column widths to the longer "measured here" cells.
        self.beginResetModel()
        self._memo.clear()
        self._rows = self._evaluate()
        self.endResetModel()

    def set_hardware(self, hardware: Hardware) -> None:
        """Detected (or planned) hardware."""
        self._hardware = hardware
        self._refresh_cells()

    def set_local(self, local: dict[str, LocalInfo]) -> None:
        """The download state of each branch (branch name -> info)."""
        if local == self._local:
            return
        self._local = dict(local)
        col = self.column_index("download")
        self._memo = {k: v for k, v in self._memo.items() if k[1] != col}
        if self._rows and col >= 0:
            self.dataChanged.emit(self.index(0, col), self.index(len(self._rows) - 1, col))

    def local_info(self, branch: str) -> LocalInfo:
        """The local state of a branch."""
        return self._local.get(branch, LocalInfo(LocalState.NONE))

    def row_of(self, branch: str) -> int:
        """Source row of a branch; -1 if absent."""
        return next((i for i, r in enumerate(self._rows) if r.info.branch == branch), -1)

    def branch_row(self, branch: str) -> BranchRow | None:
        """The evaluated row of a branch; None if absent."""
        row = self.row_of(branch)
        return self._rows[row] if row >= 0 else None

    def _evaluate(self) -> list[BranchRow]:
        if self._hardware is None or not self._branches:
            return []
        return evaluate(
            self._branches, self._context, self._cache, self._hardware, self._prompt, self._measurements
        )

    def _refresh_cells(self) -> None:
        self._memo.clear()
        self._rows = self._evaluate()
        if self._rows and self.rowCount() == len(self._rows):
            self.dataChanged.emit(self.index(0, 0), self.index(len(self._rows) - 1, len(self._columns) - 1))
        else:
            self.beginResetModel()
            self.endResetModel()

    # -- QAbstractTableModel ---------------------------------------------------------------------------

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008 - Qt's signature
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._columns)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = 0) -> Any:
        if orientation != Qt.Orientation.Horizontal or not 0 <= section < len(self._columns):
            return None
        column = self._columns[section]
        if role == Qt.ItemDataRole.DisplayRole:
            return column.title
        if role == Qt.ItemDataRole.ToolTipRole:
            return column.tooltip
        return None

    def data(self, index: Index, role: int = 0) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._rows):
            return None
        # A view asks for a dozen roles per cell on every paint: compute each once per evaluation.
        key = (index.row(), index.column(), role)
        if key in self._memo:
            return self._memo[key]
        value = self._data(self._rows[index.row()], self._columns[index.column()], role)
        self._memo[key] = value
        return value

    def _data(self, row: BranchRow, column: Column, role: int) -> Any:
        if role == BRANCH_ROLE:
            return row.info.branch
        if role == Qt.ItemDataRole.DisplayRole:
            return self._display(row, column)
        if role == SORT_ROLE:
            return self._sort_key(row, column)
        if role == Qt.ItemDataRole.ToolTipRole:
            return self._tooltip(row, column)
        if role == FIT_ROLE:
            return self._fit(row, column)
        if role == BUTTON_ROLE and column.key == "download":
            return self._button(row)
        if role == Qt.ItemDataRole.ForegroundRole:
            return self._foreground(row, column)
        if role == Qt.ItemDataRole.FontRole and column.key == "branch":
            font = QFont()
            font.setBold(row.info.branch == "main")
            return font
        if (
            role == Qt.ItemDataRole.TextAlignmentRole and column.key in ("bits", "group", "damp", "size")
        ) or (role == Qt.ItemDataRole.TextAlignmentRole and column.backend):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    # -- cells ---------------------------------------------------------------------------------------

    def _display(self, row: BranchRow, column: Column) -> str:
        info, q = row.info, row.info.quantization
        gptq = info.is_gptq
        key = column.key
        if key == "branch":
            return info.branch
        if key == "bits":
            return dash(q.bits) if gptq else "—"
        if key == "group":
            return ("none" if q.group_size is None else str(q.group_size)) if gptq else "—"
        if key == "act":
            return "—" if q.act_order is None or not gptq else ("Yes" if q.act_order else "No")
        if key == "damp":
            return "—" if q.damp_percent is None else f"{q.damp_percent:g}"
        if key == "dataset":
            return dash(info.dataset)
        if key == "size":
            return format_size(info.size_bytes) if info.files else "—"
        if column.backend:
            return memory_text(row.backend(column.backend))
        if key == "fit":
            status = self._fit(row, column)
            return theme.FIT_LABELS[status] if status else ""
        if key == "backends":
            return backends_text(row)
        if key == "download":
            return self._button(row)[0]
        if key == "description":
            if info.error:
                return f"Could not be read: {info.error}"
            if not gptq:
                return f"Not GPTQ: {info.not_gptq_reason}"
            return " ".join(info.description.split())
        return ""

    def _sort_key(self, row: BranchRow, column: Column) -> Any:
        info, q = row.info, row.info.quantization
        key = column.key
        if key == "bits":
            return q.bits or 99
        if key == "group":
            return q.group_size or 1 << 30
        if key == "act":
            return -1 if q.act_order is None else int(q.act_order)
        if key == "damp":
            return q.damp_percent if q.damp_percent is not None else -1.0
        if key == "size":
            return info.size_bytes
        if column.backend:
            a = row.backend(column.backend)
            return (0 if a.compatibility.compatible else 1, a.vram.total if a.vram else 1 << 62)
        if key == "fit":
            status = self._fit(row, column)
            return FIT_ORDER.index(status) if status else len(FIT_ORDER)
        if key == "branch":
            return (info.branch != "main", info.branch.lower())
        return self._display(row, column).lower()

    def _fit(self, row: BranchRow, column: Column) -> FitStatus | None:
        if column.key == "fit":
            return row.fit.status
        return None

    def _tooltip(self, row: BranchRow, column: Column) -> str | None:
        if column.key == "fit":
            best = (
                f" Default backend: {row.backend(row.best_backend).display_name}." if row.best_backend else ""
            )
            plan = f"<br>At {row.context} tokens of context, prompts up to {row.prompt} tokens."
            lines = split_lines(row.fit)
            return row.fit.message + best + plan + "".join(f"<br>{line}" for line in lines)
        if column.backend:
            a = row.backend(column.backend)
            parts = "".join(f"<br>{line}" for line in parts_lines(a))
            return f"<b>{a.display_name}</b>: {a.compatibility.reason}{parts}<br>{a.fit.message}"
        if column.key == "backends":
            return backends_tooltip(row)
        if column.key == "description":
            return row.info.error or row.info.description or row.info.not_gptq_reason or None
        if column.key == "download":
            local = self.local_info(row.info.branch)
            return local.message or None
        if column.key == "branch" and row.info.warnings:
            return "<br>".join(f"⚠ {w}" for w in row.info.warnings)
        return None

    def _foreground(self, row: BranchRow, column: Column) -> QColor | None:
        if column.key == "description" and row.info.error:
            return theme.error_color()
        if column.backend and not row.backend(column.backend).compatibility.compatible:
            return theme.muted_text()
        if column.key == "branch" and row.info.warnings:
            return theme.warning_color()
        if column.key == "backends" and row.best_backend is None:
            return theme.muted_text()
        return None

    def _button(self, row: BranchRow) -> tuple[str, bool]:
        local = self.local_info(row.info.branch)
        state = local.state
        if state is LocalState.DOWNLOADED and local.commit and local.commit != row.info.commit:
            state = LocalState.UPDATE
        if state is LocalState.NONE:
            return "Download", True
        if state is LocalState.DOWNLOADING:
            return f"Downloading {local.fraction * 100:.0f} %", False
        if state is LocalState.UPDATE:
            return "Update available", True
        if state in (LocalState.INCOMPLETE, LocalState.FAILED):
            return "Resume", True
        return state.value, False
