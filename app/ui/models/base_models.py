"""Which model each repo was quantized from, for the Models page's "Quantized versions" button.

A repo opened from the search results brings its base model with its row; any other repo is looked
up once per session (one ``/api/models`` request, in a worker).
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal

from app.catalog.search_query import ModelHit
from app.ui.workers import start_worker


def lookup_hit(repo_id: str) -> ModelHit | None:
    """Worker body: the repo's search row (its tags name its base model), or None."""
    from app.auth import read_token
    from app.catalog.search import HubSearch

    return HubSearch(token=read_token()).lookup(repo_id)


def base_of(hit: ModelHit) -> str | None:
    """The model whose quantized versions a row leads to: its base, or itself when it is a base."""
    return hit.base_model or (None if hit.is_quantized else hit.repo_id)


class BaseModels(QObject):
    """Repo id -> base model (None: none known), filled from search rows and look-ups."""

    known = Signal(str)  # a repo id whose base model just became known

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._bases: dict[str, str | None] = {}

    def remember(self, hit: ModelHit) -> None:
        """What a search row says."""
        self._bases[hit.repo_id] = base_of(hit)

    def get(self, repo_id: str) -> str | None:
        """The base model, if known; the first ask for an unknown repo starts its look-up."""
        if repo_id not in self._bases:
            self._bases[repo_id] = None  # asked once per session
            start_worker(
                lookup_hit,
                repo_id,
                connect={"returned": lambda hit: self._looked_up(repo_id, hit), "errored": lambda _e: None},
            )
        return self._bases[repo_id]

    def _looked_up(self, repo_id: str, hit: ModelHit | None) -> None:
        if hit is not None and base_of(hit) is not None:
            self._bases[repo_id] = base_of(hit)
            self.known.emit(repo_id)
