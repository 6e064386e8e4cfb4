"""Fit at a glance for a search result: the smallest GPTQ branch's memory need and its verdict.

The repo's branch catalog is fetched with the same :class:`~app.catalog.service.Catalog` that opens a
repo (cached on disk by commit, so opening the result afterwards is instant and a second glance costs
one request), and judged with :func:`app.catalog.table.evaluate`: nothing here estimates memory itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from app.catalog.fit import FitStatus
from app.catalog.table import evaluate
from app.catalog.vram import CacheType
from app.hardware import Hardware
from app.units import format_size

if TYPE_CHECKING:  # the service imports the Hub client: only workers need it at run time
    from app.catalog.service import Catalog, RepoCatalog

FIT_WORDS: dict[FitStatus, str] = {
    FitStatus.FITS: "Fits",
    FitStatus.TIGHT: "Tight",
    FitStatus.NO_FIT: "Doesn't fit",
    FitStatus.CPU_ONLY: "CPU only",
    FitStatus.UNKNOWN: "Unknown",
}
# A glance reads a whole repo; fewer parallel requests per repo keep several glances polite.
GLANCE_WORKERS = 8


@dataclass(frozen=True)
class GlanceFit:
    """What the result list shows in its fit column."""

    status: FitStatus
    need_bytes: int | None  # of the smallest GPTQ branch, with its best backend
    branch: str | None
    message: str  # the tooltip: which branch, which backend, why

    @property
    def label(self) -> str:
        """The plain-text verdict: "Fits · 4.1 GiB", "No GPTQ branch"."""
        if self.need_bytes is None:
            return "No GPTQ branch" if self.status is FitStatus.UNKNOWN else FIT_WORDS[self.status]
        return f"{FIT_WORDS[self.status]} · {format_size(self.need_bytes)}"


def fetch_for_glance(repo_id: str, catalog: Catalog | None = None) -> RepoCatalog:
    """The repo's branch catalog (network; run it in a worker)."""
    from app.catalog.repo_ref import RepoRef
    from app.catalog.service import Catalog

    return (catalog or Catalog(max_workers=GLANCE_WORKERS)).fetch(RepoRef(repo_id))


def glance_fit(catalog: RepoCatalog, context: int | None, cache: CacheType, hardware: Hardware) -> GlanceFit:
    """The smallest GPTQ branch a backend can run here, its need and fit (pure computation)."""
    rows = evaluate(catalog.branches, context, cache, hardware)
    candidates = []
    for row in rows:
        if not row.info.is_gptq or row.best_backend is None:
            continue
        vram = row.backend(row.best_backend).vram
        if vram is not None:
            candidates.append((vram.total, row))
    if not candidates:
        gptq = [r for r in rows if r.info.is_gptq]
        why = gptq[0].fit.message if gptq else "none of its branches is a GPTQ quantization"
        return GlanceFit(FitStatus.UNKNOWN, None, None, f"{catalog.repo_id}: {why}")
    need, row = min(candidates, key=lambda c: c[0])
    best = row.backend(row.best_backend or "")
    where = "RAM" if best.on_cpu else "GPU memory"
    message = (
        f"Smallest GPTQ branch: {row.info.branch} needs {format_size(need)} of {where} with "
        f"{best.display_name} at {row.context} tokens. {row.fit.message}"
    )
    return GlanceFit(row.fit.status, need, row.info.branch, message)
