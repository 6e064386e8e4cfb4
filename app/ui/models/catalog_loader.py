"""Loads a repo's branch catalog for the Models page: the cached table at once, then the Hub's refresh.

Each load runs in a worker (:func:`load_catalog`); a newer load, or :meth:`CatalogLoader.cancel`,
makes older answers void (a generation number). After a catalog is shown, the user's own memory
measurements of the repo are read in another worker (:func:`read_measurements`).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, Signal

from app.catalog.measured import MeasuredPeak
from app.catalog.repo_ref import RepoRef
from app.ui.workers import Worker, start_worker

if TYPE_CHECKING:
    from app.catalog.service import RepoCatalog


def load_catalog(ref: RepoRef) -> Generator[Any, None, Any]:
    """Worker body: yield the cached table (if any), then return the refreshed one.

    Imported here, on the worker thread: the Hub client pulls in huggingface_hub, which the GUI
    thread never needs to load.
    """
    from app.catalog.service import Catalog

    catalog = Catalog()
    cached = catalog.cached(ref)
    if cached is not None:
        yield cached
    return catalog.fetch(ref)


def read_measurements(repo_id: str) -> list[MeasuredPeak]:
    """Worker body: the user's measurements of one repo (a damaged file is set aside, then empty)."""
    from app.catalog.measured import MeasuredStore

    return MeasuredStore().for_repo(repo_id)


class CatalogLoader(QObject):
    """The catalog shown, the repo loading, and the worker that fetches it."""

    started = Signal(object, bool)  # RepoRef; True: another repo than the shown one (nothing to show yet)
    loaded = Signal(object, bool)  # RepoCatalog; True: final (False: the cached table, a refresh follows)
    failed = Signal(object, object)  # RepoRef, the exception
    measured = Signal(list)  # list[MeasuredPeak] of the shown repo
    finished = Signal()  # the load is over (loaded, failed or cancelled)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.catalog: RepoCatalog | None = None  # the one shown (cached or fresh)
        self.loading_ref: RepoRef | None = None
        self.shown_ref: RepoRef | None = None  # the repo (and branch) the table shows
        self._generation = 0
        self._worker: Worker[Any] | None = None

    @property
    def is_loading(self) -> bool:
        """Whether a catalog fetch is under way."""
        return self.loading_ref is not None

    def load(self, ref: RepoRef) -> None:
        """Fetch ``ref`` (the cached table first); an earlier load's answers are dropped."""
        if self._worker is not None:
            self._worker.quit()
        self._generation += 1
        generation = self._generation
        self.loading_ref = ref
        other_repo = self.catalog is None or self.catalog.repo_id != ref.repo_id
        if other_repo:
            self.catalog = None
        self.started.emit(ref, other_repo)
        self._worker = start_worker(
            load_catalog,
            ref,
            connect={
                "yielded": lambda cat: self._loaded(generation, cat, final=False),
                "returned": lambda cat: self._loaded(generation, cat, final=True),
                "errored": lambda exc: self._failed(generation, ref, exc),
                "finished": lambda: self._finished(generation),
            },
        )

    def refresh(self) -> None:
        """Fetch the shown repo again (not while a load is under way)."""
        if self.loading_ref is None and self.shown_ref is not None:
            self.load(self.shown_ref)

    def cancel(self) -> None:
        """Drop the load under way, if any (its answers no longer reach the page)."""
        if self._worker is not None:
            self._worker.quit()
            self._generation += 1
            self._finished(self._generation)

    def _loaded(self, generation: int, catalog: RepoCatalog, final: bool) -> None:
        if generation != self._generation:
            return
        self.catalog = catalog
        self.shown_ref = self.loading_ref
        start_worker(read_measurements, catalog.repo_id, connect={"returned": self.measured.emit})
        self.loaded.emit(catalog, final)  # the measurements arrive later, on the GUI thread

    def _failed(self, generation: int, ref: RepoRef, exc: BaseException) -> None:
        if generation == self._generation:
            self.failed.emit(ref, exc)

    def _finished(self, generation: int) -> None:
        if generation != self._generation:
            return
        self._worker = None
        self.loading_ref = None
        self.finished.emit()
