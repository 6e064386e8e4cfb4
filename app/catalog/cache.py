"""The catalog's disk cache: one JSON file per repo, branch facts keyed by their commit.

Reopening a repo shows the cached table at once; a refresh re-fetches only branches whose commit
moved. A corrupt or foreign cache file is ignored (and later overwritten), never fatal.
"""

from __future__ import annotations

import errno
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.atomic_files import write_json_atomic
from app.catalog.branch import BranchInfo

CACHE_VERSION = 1
log = logging.getLogger(__name__)


@dataclass
class CachedRepo:
    """What is remembered about one repo."""

    repo_id: str
    fetched_at: float
    branches: dict[str, BranchInfo] = field(default_factory=dict)
    branch_order: list[str] = field(default_factory=list)
    card_commit: str | None = None
    card_text: str | None = None


class CatalogCache:
    """Reads and writes :class:`CachedRepo` records under one directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.write_error: str | None = None  # why the last save failed (a sentence), None when it worked

    def path_for(self, repo_id: str) -> Path:
        """The cache file of a repo (ids are validated, but '/' must not become a directory)."""
        return self.directory / (repo_id.replace("/", "--") + ".json")

    def load(self, repo_id: str) -> CachedRepo | None:
        """The cached record, or None if absent, unreadable or written by another version."""
        try:
            data: dict[str, Any] = json.loads(self.path_for(repo_id).read_text(encoding="utf-8"))
            if data.get("version") != CACHE_VERSION or data.get("repo_id") != repo_id:
                return None
            return CachedRepo(
                repo_id=repo_id,
                fetched_at=float(data["fetched_at"]),
                branches={name: BranchInfo.from_dict(b) for name, b in data["branches"].items()},
                branch_order=list(data["branch_order"]),
                card_commit=data.get("card_commit"),
                card_text=data.get("card_text"),
            )
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None

    def save(self, record: CachedRepo) -> None:
        """Write atomically: a crash mid-write leaves the previous file intact.

        A write that fails (a full disk, a read-only cache folder) is not an error: the record is just
        not cached, and :attr:`write_error` says why.
        """
        payload = {
            "version": CACHE_VERSION,
            "repo_id": record.repo_id,
            "fetched_at": record.fetched_at,
            "branch_order": record.branch_order,
            "branches": {name: info.to_dict() for name, info in record.branches.items()},
            "card_commit": record.card_commit,
            "card_text": record.card_text,
        }
        try:
            write_json_atomic(self.path_for(record.repo_id), payload, sort_keys=False)
        except OSError as exc:
            # The table was fetched; failing to remember it (full disk, read-only cache) must not lose it.
            full = exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))
            reason = "the disk is full" if full else (exc.strerror or str(exc))
            self.write_error = (
                f"The table of {record.repo_id} could not be cached in {self.directory} ({reason}); "
                "it will be fetched again next time" + (": free some space." if full else ".")
            )
            log.warning("%s", self.write_error)
            return
        self.write_error = None
