"""What a Hub search asks and what it answers, as plain data (no network, no huggingface_hub import).

:mod:`app.catalog.search` runs these queries; the window builds them on the GUI thread, which
therefore never imports the Hub client.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

PAGE_SIZE = 30
# Only what a result row shows (base model and the quantized mark come from the tags).
EXPAND_FIELDS = (
    "author",
    "downloads",
    "likes",
    "lastModified",
    "tags",
    "gated",
    "safetensors",
    "usedStorage",
)
GPTQ_TAG = "gptq"
QUANT_TAGS = frozenset({"gptq", "awq", "gguf", "exl2", "bitsandbytes", "4-bit", "8-bit", "quantized"})


class SortKey(StrEnum):
    """How results are ordered (always descending, as on the Hub)."""

    DOWNLOADS = "downloads"
    LIKES = "likes"
    TRENDING = "trending"
    MODIFIED = "modified"


# The Hub's names for the sort keys (what list_models sends for downloads/likes/trending_score/last_modified).
SORT_PARAMS: dict[SortKey, str] = {
    SortKey.DOWNLOADS: "downloads",
    SortKey.LIKES: "likes",
    SortKey.TRENDING: "trendingScore",
    SortKey.MODIFIED: "lastModified",
}
SORT_LABELS: dict[SortKey, str] = {
    SortKey.DOWNLOADS: "Most downloads",
    SortKey.LIKES: "Most likes",
    SortKey.TRENDING: "Trending",
    SortKey.MODIFIED: "Recently updated",
}


@dataclass(frozen=True)
class SearchQuery:
    """What the user asked for: words (or a base model whose quantized versions to list) and how."""

    text: str = ""
    author: str | None = None
    sort: SortKey = SortKey.DOWNLOADS
    gptq_only: bool = True
    base_model: str | None = None  # list the repos quantized from this model instead of searching
    page_size: int = PAGE_SIZE

    def stages(self) -> list[list[tuple[str, str]]]:
        """The /api/models parameters of each stage; the results of the stages follow each other."""
        common: list[tuple[str, str]] = []
        if self.author:
            common.append(("author", self.author))
        tail = [("sort", SORT_PARAMS[self.sort]), ("limit", str(self.page_size))]
        tail += [("expand", name) for name in EXPAND_FIELDS]
        if self.base_model:
            base_filter = ("filter", f"base_model:quantized:{self.base_model}")
            first = [*common, base_filter, ("filter", GPTQ_TAG), *tail]
            return [first] if self.gptq_only else [first, [*common, base_filter, *tail]]
        words = " ".join(self.text.split())
        params = [("search", words), *common] if words else list(common)
        if self.gptq_only and GPTQ_TAG not in words.lower():
            params.append(("filter", GPTQ_TAG))
        return [[*params, *tail]]

    def describe(self) -> str:
        """A few words for status lines: "'llama 70b'", "quantized versions of org/name"."""
        if self.base_model:
            return f"quantized versions of {self.base_model}"
        who = f" by {self.author}" if self.author else ""
        return f"'{' '.join(self.text.split())}'{who}" if self.text.strip() else f"models{who}"

    def cache_key(self) -> str:
        """A file-name-safe digest of everything that changes the first page."""
        return hashlib.sha1(json.dumps(self.stages()).encode()).hexdigest()[:20]


@dataclass(frozen=True)
class ModelHit:
    """One search result as a row shows it."""

    repo_id: str
    author: str
    downloads: int | None = None
    likes: int | None = None
    last_modified: float | None = None  # POSIX time
    parameters: int | None = None  # from the safetensors metadata, when the Hub has it
    size_bytes: int | None = None  # storage used by the repo (all branches), when the Hub gives it
    tags: tuple[str, ...] = ()
    gated: bool = False

    @property
    def is_gptq(self) -> bool:
        """The gptq tag, or GPTQ in the name."""
        return GPTQ_TAG in self.tags or GPTQ_TAG in self.repo_id.lower()

    @property
    def base_model(self) -> str | None:
        """The model this one derives from (its card's ``base_model``, as the Hub tags it)."""
        plain = None
        for tag in self.tags:
            parts = tag.split(":")
            if parts[0] != "base_model" or len(parts) < 2:
                continue
            if len(parts) == 3 and parts[1] == "quantized":
                return parts[2]
            if len(parts) == 2 and plain is None:
                plain = parts[1]
        return plain

    @property
    def is_quantized(self) -> bool:
        """A quantized upload: GPTQ, or a quantization tag, or quantized from a base model."""
        return (
            self.is_gptq
            or any(t in QUANT_TAGS for t in self.tags)
            or any(t.startswith("base_model:quantized:") for t in self.tags)
        )

    @property
    def badges(self) -> tuple[str, ...]:
        """The tags that matter to a user, in a fixed order."""
        table = (
            ("GPTQ", self.is_gptq),
            ("quantized", self.is_quantized and not self.is_gptq),
            ("gated", self.gated),
        )
        return tuple(name for name, shown in table if shown)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (the CLI's ``--json`` and the disk cache)."""
        data = asdict(self)
        data["tags"] = list(self.tags)
        data["base_model"] = self.base_model
        data["is_gptq"] = self.is_gptq
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelHit:
        """Inverse of :meth:`to_dict` (extra keys ignored)."""
        return cls(
            repo_id=str(data["repo_id"]),
            author=str(data.get("author") or ""),
            downloads=data.get("downloads"),
            likes=data.get("likes"),
            last_modified=data.get("last_modified"),
            parameters=data.get("parameters"),
            size_bytes=data.get("size_bytes"),
            tags=tuple(str(t) for t in data.get("tags", [])),
            gated=bool(data.get("gated")),
        )


@dataclass(frozen=True)
class SearchCursor:
    """Where the next page starts: a stage and the Hub's ``Link`` URL (None: the stage's first page)."""

    stage: int
    next_url: str | None = None


@dataclass(frozen=True)
class SearchPage:
    """One page of results and how to get the next one."""

    query: SearchQuery
    hits: tuple[ModelHit, ...]
    cursor: SearchCursor | None  # None: no more results
    fetched_at: float = field(default_factory=time.time)
    stale: bool = False
    stale_reason: str = ""


def opens_a_repo(text: str) -> bool:
    """Whether the search-or-open box should open ``text`` as a repo rather than search for it.

    An exact ``org/name``, ``org/name:branch`` or a URL opens (a malformed URL then says what is
    wrong with it); anything else is a search.
    """
    from app.catalog.repo_ref import parse_repo_ref
    from app.errors import InvalidRepoIdError

    stripped = text.strip()
    if "://" in stripped or stripped.startswith(("huggingface.co/", "hf.co/", "www.huggingface.co/")):
        return True
    try:
        parse_repo_ref(stripped)
    except InvalidRepoIdError:
        return False
    return True
