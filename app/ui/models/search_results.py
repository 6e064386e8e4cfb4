"""The search results list: a Qt item model over :class:`~app.catalog.search.ModelHit` rows.

Rows arrive a page at a time (:meth:`SearchResultsModel.append`); when the view scrolls to the end,
Qt asks :meth:`canFetchMore`/:meth:`fetchMore` and the model emits :attr:`more_wanted` for its owner
to fetch the next page in a worker. Fit verdicts arrive later per repo (:meth:`set_fit`); until then
the fit cells read "—".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt, Signal

from app.catalog.fit import FitStatus
from app.catalog.search_fit import GlanceFit
from app.catalog.search_query import ModelHit
from app.catalog.search_text import format_count, format_day, size_or_parameters
from app.ui.models.branch_model import FIT_ROLE
from app.units import format_size

REPO_ROLE = Qt.ItemDataRole.UserRole + 10  # the row's repo id
_Index = QModelIndex | QPersistentModelIndex
_RIGHT = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
_LEFT = Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter


@dataclass(frozen=True)
class ResultColumn:
    """One column: its key, its header and how its cells are aligned."""

    key: str
    title: str
    align: Qt.AlignmentFlag = _LEFT
    tooltip: str = ""


COLUMNS: tuple[ResultColumn, ...] = (
    ResultColumn("repo", "Model"),
    ResultColumn("downloads", "Downloads", _RIGHT, "Downloads in the last 30 days"),
    ResultColumn("likes", "Likes", _RIGHT),
    ResultColumn("updated", "Updated", _LEFT, "Last commit to the repo"),
    ResultColumn(
        "size", "Params / size", _RIGHT, "Parameter count, else the storage the repo uses on the Hub"
    ),
    ResultColumn("tags", "Tags"),
    ResultColumn("fit", "Fit", _LEFT, "Smallest GPTQ branch on this machine (or the planned GPUs)"),
    ResultColumn("need", "Needs", _RIGHT, "Memory the smallest GPTQ branch needs"),
    ResultColumn("base", "Base model"),
)
COLUMN_INDEX = {c.key: i for i, c in enumerate(COLUMNS)}
# A fit that could not be known: the reason, shown as the tooltip of a "—".
FitCell = GlanceFit | str


class SearchResultsModel(QAbstractTableModel):
    """Rows of search results, paged in as the view scrolls, with fit verdicts filled in later."""

    more_wanted = Signal()

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self.hits: list[ModelHit] = []
        self._rows: dict[str, int] = {}
        self._fits: dict[str, FitCell] = {}
        self.has_more = False
        self.loading_more = False

    # -- updates --------------------------------------------------------------------------------------

    def reset(self, hits: tuple[ModelHit, ...] = (), has_more: bool = False) -> None:
        """Replace every row (a new search)."""
        self.beginResetModel()
        self.hits = []
        self._rows = {}
        self._fits = {}
        self._add(hits)
        self.has_more = has_more
        self.loading_more = False
        self.endResetModel()

    def append(self, hits: tuple[ModelHit, ...], has_more: bool) -> None:
        """Add a page below the rows (repos already listed are skipped)."""
        fresh = [h for h in dict.fromkeys(hits) if h.repo_id not in self._rows]
        self.loading_more = False
        self.has_more = has_more
        if fresh:
            first = len(self.hits)
            self.beginInsertRows(QModelIndex(), first, first + len(fresh) - 1)
            self._add(tuple(fresh))
            self.endInsertRows()

    def _add(self, hits: tuple[ModelHit, ...]) -> None:
        for hit in hits:
            if hit.repo_id not in self._rows:
                self._rows[hit.repo_id] = len(self.hits)
                self.hits.append(hit)

    def set_fit(self, repo_id: str, fit: FitCell) -> None:
        """The fit verdict (or why there is none) of one repo's row."""
        self._fits[repo_id] = fit
        row = self._rows.get(repo_id)
        if row is not None:
            self.dataChanged.emit(self.index(row, COLUMN_INDEX["fit"]), self.index(row, COLUMN_INDEX["need"]))

    def clear_fits(self) -> None:
        """Forget every verdict (the planning changed and no cached catalog can answer for a row)."""
        self._fits = {}
        if self.hits:
            self.dataChanged.emit(
                self.index(0, COLUMN_INDEX["fit"]), self.index(len(self.hits) - 1, COLUMN_INDEX["need"])
            )

    def fit_of(self, repo_id: str) -> FitCell | None:
        """The verdict shown for a repo, if any."""
        return self._fits.get(repo_id)

    def row_of(self, repo_id: str) -> int:
        """Row of a repo, or -1."""
        return self._rows.get(repo_id, -1)

    # -- Qt model API ---------------------------------------------------------------------------------

    def rowCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008 - Qt's signature
        return 0 if parent.isValid() else len(self.hits)

    def columnCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008 - Qt's signature
        return 0 if parent.isValid() else len(COLUMNS)

    def canFetchMore(self, parent: _Index = QModelIndex()) -> bool:  # noqa: B008 - Qt's signature
        return not parent.isValid() and self.has_more and not self.loading_more

    def fetchMore(self, parent: _Index = QModelIndex()) -> None:  # noqa: B008 - Qt's signature
        if self.canFetchMore(parent):
            self.loading_more = True
            self.more_wanted.emit()

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if orientation != Qt.Orientation.Horizontal or not 0 <= section < len(COLUMNS):
            return None
        column = COLUMNS[section]
        if role == Qt.ItemDataRole.DisplayRole:
            return column.title
        if role == Qt.ItemDataRole.ToolTipRole:
            return column.tooltip or None
        if role == Qt.ItemDataRole.TextAlignmentRole:
            return int(column.align)
        return None

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self.hits):
            return None
        hit = self.hits[index.row()]
        column = COLUMNS[index.column()]
        if role == Qt.ItemDataRole.DisplayRole:
            return self._text(hit, column.key)
        if role == Qt.ItemDataRole.ToolTipRole:
            return self._tooltip(hit, column.key)
        if role == Qt.ItemDataRole.TextAlignmentRole:
            return int(column.align)
        if role == FIT_ROLE and column.key == "fit":
            fit = self._fits.get(hit.repo_id)
            return fit.status if isinstance(fit, GlanceFit) else FitStatus.UNKNOWN
        if role == REPO_ROLE:
            return hit.repo_id
        return None

    def _text(self, hit: ModelHit, key: str) -> str:
        fit = self._fits.get(hit.repo_id)
        texts = {
            "repo": hit.repo_id,
            "downloads": format_count(hit.downloads),
            "likes": format_count(hit.likes),
            "updated": format_day(hit.last_modified),
            "size": size_or_parameters(hit),
            "tags": " · ".join(hit.badges),
            "base": hit.base_model or "",
            "fit": "n/a" if isinstance(fit, str) else "—",  # n/a: its branches could not be read
            "need": format_size(fit.need_bytes) if isinstance(fit, GlanceFit) and fit.need_bytes else "—",
        }
        return texts[key]

    def _tooltip(self, hit: ModelHit, key: str) -> str | None:
        if key in ("fit", "need"):
            fit = self._fits.get(hit.repo_id)
            if isinstance(fit, GlanceFit):
                return fit.message
            if isinstance(fit, str):
                return fit
            return "Not a GPTQ upload." if not hit.is_gptq else "Reading its branches…"
        if key == "repo":
            return f"{hit.repo_id} — Enter or double-click opens its branches"
        if key == "tags":
            return ", ".join(hit.tags) or None
        return None
