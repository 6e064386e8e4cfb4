"""The branch table's view: sortable rows over :class:`~app.ui.models.branch_model.BranchTableModel`,
fit badges and Download buttons, columns sized to their texts, one selected branch kept across resets.

It says when the row the details pane shows may have changed (:attr:`BranchTableView.shown_row_changed`)
and which branch's Download button was clicked (:attr:`BranchTableView.download_clicked`).
"""

from __future__ import annotations

from PySide6.QtCore import QItemSelection, QModelIndex, QSortFilterProxyModel, Qt, Signal
from PySide6.QtGui import QFont, QFontMetrics
from PySide6.QtWidgets import QAbstractItemDelegate, QAbstractItemView, QHeaderView, QTableView, QWidget

from app.catalog.table import BranchRow
from app.ui import theme
from app.ui.column_widths import ColumnWidths
from app.ui.models.branch_delegates import BadgeDelegate, ButtonDelegate
from app.ui.models.branch_model import SORT_ROLE, BranchTableModel

# Widest a column grows to fit its texts (the rest elide; the tooltip and the details pane say more).
COLUMN_CAPS = {"dataset": 110, "branch": 240, "description": 120}


class BranchTableView(QTableView):
    """The table of a repo's branches; :attr:`branches` is the model, :attr:`proxy` sorts it."""

    download_clicked = Signal(str)  # branch
    shown_row_changed = Signal()  # the selected row, or its figures, may have changed

    def __init__(self, branches: BranchTableModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.branches = branches
        self._selected_branch: str | None = None
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(branches)
        self.proxy.setSortRole(SORT_ROLE)
        self.setModel(self.proxy)
        self.setSortingEnabled(True)
        self.sortByColumn(-1, Qt.SortOrder.AscendingOrder)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setAlternatingRowColors(True)
        self.setWordWrap(False)
        self.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.verticalHeader().hide()
        self.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 14)
        self.horizontalHeader().setStretchLastSection(True)
        self.horizontalHeader().setHighlightSections(False)
        self.column_widths = ColumnWidths(
            self.horizontalHeader(), lambda: [column.key for column in self.branches.columns]
        )
        self.setMouseTracking(True)
        self.badges = BadgeDelegate(self)
        self.buttons = ButtonDelegate(self)
        self.buttons.clicked.connect(self.download_clicked)
        branches.modelReset.connect(self._columns_changed)
        branches.dataChanged.connect(self._cells_changed)
        self.selectionModel().selectionChanged.connect(self._selection_changed)
        self._columns_changed()

    def select_branch(self, branch: str) -> bool:
        """Select a branch's row and scroll to it; False when the table has no such branch."""
        row = self.branches.row_of(branch)
        if row < 0:
            return False
        index = self.proxy.mapFromSource(self.branches.index(row, 0))
        self.selectRow(index.row())
        self.scrollTo(index)
        return True

    def selected_row(self) -> BranchRow | None:
        """The selected branch's row (None: none selected, or it is gone)."""
        if self._selected_branch is None:
            return None
        return self.branches.branch_row(self._selected_branch)

    def _columns_changed(self) -> None:
        for i, column in enumerate(self.branches.columns):
            delegate: QAbstractItemDelegate = self.itemDelegate()
            if column.key == "fit" or column.gpu >= 0:
                delegate = self.badges
            elif column.key == "download":
                delegate = self.buttons
            self.setItemDelegateForColumn(i, delegate)
        if self.branches.rowCount():
            self._fit_columns()
        self._reselect()

    def _fit_columns(self) -> None:
        """Column widths from the cell texts (what resizeColumnsToContents does, at a tenth of the cost:
        it asks each cell's delegate for a size hint, a dozen Python calls per cell); a column the user
        sized keeps the user's width."""
        header = self.horizontalHeader()
        plain = self.fontMetrics()
        bold_font = QFont(self.font())
        bold_font.setBold(True)
        bold = QFontMetrics(bold_font)
        model = self.branches
        with self.column_widths.sizing():
            for i, column in enumerate(model.columns):
                texts = [str(model.index(r, i).data() or "") for r in range(model.rowCount())]
                if column.key == "fit":  # any verdict may appear later without a reset (a planning change)
                    texts += list(theme.FIT_LABELS.values())
                metrics = bold if column.key == "fit" or column.gpu >= 0 else plain
                padding = 34 if column.key in ("fit", "download") or column.gpu >= 0 else 12
                width = max(
                    [plain.horizontalAdvance(column.title) + 22]
                    + [metrics.horizontalAdvance(t) + padding for t in texts]
                )
                header.resizeSection(i, min(width, COLUMN_CAPS.get(column.key, width)))
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setStretchLastSection(True)

    def _reselect(self) -> None:
        if not self.branches.rowCount():
            self.shown_row_changed.emit()
            return
        branch = self._selected_branch
        if branch is None or self.branches.row_of(branch) < 0:
            branch = self.branches.rows[0].info.branch
        self.select_branch(branch)

    def _selection_changed(self, _selected: QItemSelection, _deselected: QItemSelection) -> None:
        indexes = self.selectionModel().selectedRows()
        if indexes:
            source = self.proxy.mapToSource(indexes[0])
            self._selected_branch = self.branches.rows[source.row()].info.branch
        self.shown_row_changed.emit()

    def _cells_changed(self, top_left: QModelIndex, bottom_right: QModelIndex) -> None:
        download = self.branches.column_index("download")
        if top_left.column() == bottom_right.column() == download:
            return  # only the download state moved: the details pane does not show it
        self.shown_row_changed.emit()
