"""Find models on the Hub by words, author or base model: ``GET /api/models``, a page at a time.

The request is the one ``HfApi.list_models`` sends (same parameters: ``search``, repeated ``filter``,
``author``, ``sort``, ``limit``, repeated ``expand``) and each item is parsed by huggingface_hub's own
``ModelInfo``. QuantDesk issues the request itself only because ``list_models`` hides the ``Link``
header's cursor: a window loads the next page when the user scrolls, in a later worker, so it must
keep the cursor between pages (``list_models`` can only continue inside one live generator).

"GPTQ only" asks the Hub for the ``gptq`` tag, unless the words already contain "gptq" (then every
result is GPTQ by its name and the tag filter would only hide untagged uploads). "Quantized versions"
of a base model ask for the tag ``base_model:quantized:<id>`` in two stages, GPTQ first, then the rest.

The first page of every query is kept on disk; when the Hub cannot be reached (or limits the rate),
that page comes back marked stale with the reason.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx2
from huggingface_hub import get_session, hf_raise_for_status
from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled
from huggingface_hub.hf_api import ModelInfo
from huggingface_hub.utils._headers import build_hf_headers

from app import errors
from app.atomic_files import write_json_atomic
from app.catalog.hub_client import hub_endpoint
from app.catalog.search_query import (
    GPTQ_TAG,
    ModelHit,
    SearchCursor,
    SearchPage,
    SearchQuery,
    SortKey,
)

__all__ = ["HubSearch", "ModelHit", "SearchCache", "SearchCursor", "SearchPage", "SearchQuery", "SortKey"]

MAX_QUERY_CHARS = 200
_TIMEOUT = 15.0
_RETRY_DELAY_S = 0.4  # one retry of a 5xx or a reset: a blip recovers, an outage fails fast
CACHE_VERSION = 1


class SearchCache:
    """The first page of each query, one JSON file per query under ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _path(self, query: SearchQuery) -> Path:
        return self.directory / f"{query.cache_key()}.json"

    def load(self, query: SearchQuery) -> SearchPage | None:
        """The cached first page (not marked stale), or None if absent or unreadable."""
        try:
            data = json.loads(self._path(query).read_text(encoding="utf-8"))
            if data.get("version") != CACHE_VERSION:
                return None
            hits = tuple(ModelHit.from_dict(h) for h in data["hits"])
            return SearchPage(query, hits, None, float(data["fetched_at"]))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None

    def save(self, page: SearchPage) -> None:
        """Best effort: a full disk or a read-only cache only costs the offline copy."""
        payload = {
            "version": CACHE_VERSION,
            "query": page.query.describe(),
            "fetched_at": page.fetched_at,
            "hits": [h.to_dict() for h in page.hits],
        }
        with contextlib.suppress(OSError):
            write_json_atomic(self._path(page.query), payload, sort_keys=False)


def hit_from_model_info(info: ModelInfo) -> ModelHit:
    """A result row from huggingface_hub's parsed item."""
    return ModelHit(
        repo_id=info.id,
        author=info.author or info.id.split("/", 1)[0],
        downloads=info.downloads,
        likes=info.likes,
        last_modified=info.last_modified.timestamp() if info.last_modified else None,
        parameters=info.safetensors.total if info.safetensors else None,
        size_bytes=info.used_storage,
        tags=tuple(info.tags or ()),
        gated=bool(info.gated),
    )


def _model_info(item: dict[str, Any]) -> ModelInfo:
    # As list_models does: items without "siblings" get None (the parser expects the key).
    return ModelInfo(**{"siblings": None, **item})  # type: ignore[no-untyped-call]


def default_cache() -> SearchCache:
    """The search cache under QuantDesk's cache directory."""
    from app.paths import app_paths

    return SearchCache(app_paths().cache_dir / "search")


class HubSearch:
    """Runs :class:`SearchQuery` pages against the Hub's ``/api/models``."""

    def __init__(
        self,
        token: str | None = None,
        endpoint: str | None = None,
        cache: SearchCache | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.token = token
        self.endpoint = endpoint or hub_endpoint()
        self.cache = cache or default_cache()
        self._sleep = sleep

    def first_page(self, query: SearchQuery) -> SearchPage:
        """The first page; from the cache (stale, with the reason) when the Hub cannot answer now."""
        check_query(query)
        try:
            page = self.page(query, SearchCursor(0))
        except (errors.NetworkError, errors.HubServerError, errors.HubRateLimitedError) as exc:
            cached = self.cache.load(query)
            if cached is None:
                raise
            return replace(cached, stale=True, stale_reason=exc.user_message)
        self.cache.save(page)
        return page

    def page(self, query: SearchQuery, cursor: SearchCursor) -> SearchPage:
        """The page at ``cursor``; moves on to the next stage when one runs out."""
        stages = query.stages()
        stage, url = cursor.stage, cursor.next_url
        hits: list[ModelHit] = []
        while stage < len(stages):
            items, next_url = self._request(url, None if url else stages[stage], query)
            parsed = [hit_from_model_info(_model_info(item)) for item in items]
            if stage > 0:  # later stages repeat what an earlier one listed (the GPTQ-tagged repos)
                parsed = [h for h in parsed if GPTQ_TAG not in h.tags]
                parsed.sort(key=lambda h: not h.is_gptq)  # GPTQ by name only: still first on its page
            hits.extend(parsed)
            if next_url is not None:
                return SearchPage(query, tuple(hits), SearchCursor(stage, next_url))
            stage, url = stage + 1, None
            if hits:
                break
        more = SearchCursor(stage) if stage < len(stages) else None
        return SearchPage(query, tuple(hits), more)

    def lookup(self, repo_id: str) -> ModelHit | None:
        """One repo's search row (its tags name its base model); None when the Hub does not list it."""
        org, _, name = repo_id.partition("/")
        query = SearchQuery(text=name, author=org, gptq_only=False, page_size=20)
        items, _next = self._request(None, query.stages()[0], query)
        for item in items:
            if str(item.get("id", "")).lower() == repo_id.lower():
                return hit_from_model_info(_model_info(item))
        return None

    # -- HTTP ---------------------------------------------------------------------------------------

    def _request(
        self,
        url: str | None,
        params: list[tuple[str, str]] | None,
        query: SearchQuery,
    ) -> tuple[list[dict[str, Any]], str | None]:
        target = url or f"{self.endpoint}/api/models"
        for attempt in range(2):
            try:
                response = get_session().get(
                    target,
                    params=tuple(params) if params is not None else None,
                    headers=build_hf_headers(token=self.token or False),
                    timeout=_TIMEOUT,
                )
                hf_raise_for_status(response)
                items = response.json()
                if not isinstance(items, list) or not all(isinstance(i, dict) and "id" in i for i in items):
                    raise errors.MalformedResponseError(
                        "The Hub sent search results QuantDesk cannot read.",
                        "Try again later; if it persists, the Hub's API may have changed.",
                    )
                next_link: str | None = response.links.get("next", {}).get("url")
                return items, next_link
            except errors.QuantDeskError:
                raise
            except Exception as exc:
                translated, retry = self._translate(exc, query)
                if not retry or attempt == 1:
                    raise translated from exc
                self._sleep(_RETRY_DELAY_S)
        raise AssertionError("unreachable")

    def _translate(self, exc: Exception, query: SearchQuery) -> tuple[Exception, bool]:
        what = query.describe()
        if isinstance(exc, OfflineModeIsEnabled):
            return errors.NetworkError(
                "Hub access is switched off (HF_HUB_OFFLINE is set).", "Unset HF_HUB_OFFLINE to search."
            ), False
        if isinstance(exc, httpx2.TransportError):
            return errors.NetworkError(
                f"Could not reach the Hub at {self.endpoint} to search for {what}.",
                "Check your internet connection (or proxy) and try again.",
                detail=f"{exc.__class__.__name__}: {exc}",
            ), True
        if isinstance(exc, HfHubHTTPError) and exc.response is not None:
            status = exc.response.status_code
            if status == 429:
                retry_after = _retry_after(exc.response.headers.get("Retry-After"))
                wait = f"in {retry_after:.0f} s" if retry_after else "in a minute"
                return errors.HubRateLimitedError(
                    "The Hub is limiting how fast this machine may search (too many requests).",
                    f"Try again {wait}; adding a Hugging Face token in Settings raises the limit.",
                    retry_after=retry_after,
                ), False
            if status == 401:
                return errors.TokenRejectedError(
                    "The Hub rejected your Hugging Face token (invalid or revoked).",
                    "Replace it in Settings or fix HF_TOKEN; search also works without a token.",
                ), False
            if status >= 500:
                return errors.HubServerError(
                    f"The Hub answered with an error ({status}) to the search for {what}.",
                    "The Hub may be busy or down; try again in a minute.",
                ), True
            said = exc.response.headers.get("X-Error-Message") or ""
            return errors.SearchQueryError(
                f"The Hub did not accept the search for {what} ({status}{': ' + said if said else ''}).",
                "Try fewer or plainer words (letters, digits, '-', '.').",
                detail=str(exc),
            ), False
        if isinstance(exc, ValueError | KeyError | TypeError):
            return errors.MalformedResponseError(
                "The Hub sent search results QuantDesk cannot read.",
                "Try again later; if it persists, the Hub's API may have changed.",
                detail=f"{exc.__class__.__name__}: {exc}",
            ), False
        return exc, False


def check_query(query: SearchQuery) -> None:
    """Refuse what the Hub would refuse anyway, before asking it."""
    if len(query.text) > MAX_QUERY_CHARS:
        raise errors.SearchQueryError(
            f"The search is too long ({len(query.text)} characters; the most is {MAX_QUERY_CHARS}).",
            "Search for a few words of the model's name.",
        )
    if not query.text.strip() and not query.author and not query.base_model:
        raise errors.SearchQueryError(
            "Nothing to search for.", "Type a few words of a model's name, e.g. llama 70b gptq."
        )


def _retry_after(value: str | None) -> float | None:
    try:
        seconds = float(value) if value else None
    except ValueError:
        return None
    return seconds if seconds is not None and 0 <= seconds < 86_400 else None
