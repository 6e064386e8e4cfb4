"""Fit at a glance for search results: read the wanted repos' branch catalogs, a few at a time.

The results view says which repos it shows (:meth:`FitGlances.want`); at most :data:`FIT_WORKERS`
are read at once, and repos scrolled away before their turn are dropped. Catalogs are kept, so a
planning change re-judges them without the network (:meth:`FitGlances.set_planning`); the verdicts
come from :func:`app.catalog.search_fit.glance_fit`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Signal

from app.catalog.search_fit import GlanceFit, glance_fit
from app.catalog.vram import CacheType
from app.errors import QuantDeskError
from app.hardware import Hardware
from app.ui.workers import start_worker, while_alive

if TYPE_CHECKING:
    from app.catalog.service import RepoCatalog

FIT_WORKERS = 2
Verdict = GlanceFit | str  # a str: why there is no verdict


def glance_job(repo_id: str) -> RepoCatalog:
    """Worker body: a repo's branch catalog (cached on disk, so opening it later is instant)."""
    from app.catalog.search_fit import fetch_for_glance

    return fetch_for_glance(repo_id)


class FitGlances(QObject):
    """Reads catalogs for fit verdicts with bounded concurrency; emits each verdict once it is known."""

    judged = Signal(str, object)  # repo id, Verdict

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._catalogs: dict[str, RepoCatalog] = {}
        self._errors: dict[str, str] = {}
        self._running: set[str] = set()
        self._wanted: list[str] = []
        self._context: int | None = None
        self._cache = CacheType.FP16
        self._hardware: Hardware | None = None

    @property
    def in_flight(self) -> int:
        """How many repos are being read right now."""
        return len(self._running)

    def want(self, repo_ids: list[str]) -> None:
        """The repos worth a verdict now, in order; known ones are judged at once, others read."""
        self._wanted = []
        for repo_id in repo_ids:
            if repo_id in self._catalogs or repo_id in self._errors:
                self._judge(repo_id)
            elif repo_id not in self._running:
                self._wanted.append(repo_id)
        self._pump()

    def set_planning(self, context: int | None, cache: CacheType, hardware: Hardware | None) -> None:
        """What verdicts are judged against; re-judges every repo already read (no network)."""
        self._context, self._cache, self._hardware = context, cache, hardware
        for repo_id in [*self._catalogs, *self._errors]:
            self._judge(repo_id)

    def _pump(self) -> None:
        while self._wanted and len(self._running) < FIT_WORKERS:
            repo_id = self._wanted.pop(0)
            self._running.add(repo_id)
            start_worker(
                glance_job,
                repo_id,
                connect=while_alive(
                    self,
                    returned=lambda catalog, r=repo_id: self._read(r, catalog),
                    errored=lambda exc, r=repo_id: self._failed(r, exc),
                ),
            )

    def _read(self, repo_id: str, catalog: RepoCatalog) -> None:
        self._running.discard(repo_id)
        self._catalogs[repo_id] = catalog
        self._judge(repo_id)
        self._pump()

    def _failed(self, repo_id: str, exc: BaseException) -> None:
        self._running.discard(repo_id)
        reason = exc.user_message if isinstance(exc, QuantDeskError) else f"{type(exc).__name__}: {exc}"
        self._errors[repo_id] = f"Could not read its branches: {reason}"
        self._judge(repo_id)
        self._pump()

    def _judge(self, repo_id: str) -> None:
        catalog = self._catalogs.get(repo_id)
        if catalog is None:
            self.judged.emit(repo_id, self._errors[repo_id])
        elif self._hardware is not None:  # else judged once the hardware is known (set_planning)
            self.judged.emit(repo_id, glance_fit(catalog, self._context, self._cache, self._hardware))
