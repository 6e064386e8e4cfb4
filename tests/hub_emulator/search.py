"""``GET /api/models`` of the Hub emulator: search, filter, sort and cursor paging over the repo store.

What the real Hub does for the parameters ``HfApi.list_models`` sends (huggingface_hub 2.4.0):

- ``search``: every whitespace-separated word must occur in the repo id, case-insensitively;
- ``filter`` (repeatable): every value must be one of the repo's tags (``gptq``,
  ``base_model:quantized:<id>``...);
- ``author``: the org part of the id; ``gated``: true/false;
- ``sort`` (downloads, likes, trendingScore, lastModified, createdAt) with ``direction`` (-1, the
  default, is descending); ties keep the id order;
- ``limit``: the page size (at most 1000); further pages through a ``Link: <...>; rel="next"``
  header with an opaque ``cursor``;
- ``expand`` (repeatable): only ``_id``, ``id`` and the named fields are returned; without it, the
  Hub's short default set.

Repo metadata comes from ``repo.json`` (see :mod:`tests.fixtures.hub_search_repos`): downloads,
likes, trendingScore, lastModified, createdAt, tags, gated, cardData, safetensors, usedStorage. As on
the Hub, ``cardData.base_model`` adds the tags ``base_model:<id>`` and, with a
``base_model_relation``, ``base_model:<relation>:<id>``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from typing import Any
from urllib.parse import urlencode

from .repos import RepoStore

MAX_PAGE = 1000
DEFAULT_DATE = "2024-01-01T00:00:00.000Z"
SORT_FIELDS = ("downloads", "likes", "trendingScore", "lastModified", "createdAt")
EXPANDABLE = (
    "author",
    "baseModels",
    "cardData",
    "createdAt",
    "disabled",
    "downloads",
    "gated",
    "lastModified",
    "library_name",
    "likes",
    "pipeline_tag",
    "private",
    "safetensors",
    "sha",
    "tags",
    "trendingScore",
    "usedStorage",
)
DEFAULT_FIELDS = (
    "likes",
    "trendingScore",
    "private",
    "downloads",
    "tags",
    "pipeline_tag",
    "library_name",
    "createdAt",
)


def repo_record(store: RepoStore, repo_id: str) -> dict[str, Any]:
    """Everything /api/models can say about one repo, in the Hub's field names."""
    meta = store.settings(repo_id)
    card = meta.get("cardData") if isinstance(meta.get("cardData"), dict) else None
    tags = (
        [str(t) for t in meta.get("tags", []) if isinstance(t, str)]
        if isinstance(meta.get("tags"), list)
        else []
    )
    if card is not None:
        bases = card.get("base_model")
        relation = card.get("base_model_relation")
        for base in [bases] if isinstance(bases, str) else bases if isinstance(bases, list) else []:
            for tag in (f"base_model:{base}", f"base_model:{relation}:{base}" if relation else None):
                if tag and tag not in tags:
                    tags.append(tag)
    gated = meta.get("gated", False)
    record: dict[str, Any] = {
        "_id": hashlib.sha1(repo_id.encode()).hexdigest()[:24],
        "id": repo_id,
        "modelId": repo_id,
        "author": repo_id.split("/", 1)[0],
        "downloads": int(meta.get("downloads", 0)),  # type: ignore[call-overload]
        "likes": int(meta.get("likes", 0)),  # type: ignore[call-overload]
        "trendingScore": int(meta.get("trendingScore", 0)),  # type: ignore[call-overload]
        "lastModified": str(meta.get("lastModified", DEFAULT_DATE)),
        "createdAt": str(meta.get("createdAt", DEFAULT_DATE)),
        "tags": tags,
        "gated": "manual" if gated is True else gated,
        "private": False,
        "disabled": False,
        "pipeline_tag": meta.get("pipeline_tag", "text-generation"),
        "library_name": meta.get("library_name", "transformers"),
        "sha": hashlib.sha1(f"{repo_id}\0{meta.get('lastModified', '')}".encode()).hexdigest(),
    }
    if card is not None:
        record["cardData"] = card
        record["baseModels"] = {"relation": card.get("base_model_relation"), "models": []}
    for key in ("safetensors", "usedStorage"):
        if key in meta:
            record[key] = meta[key]
    return record


def _all_repo_ids(store: RepoStore) -> list[str]:
    if not store.root.is_dir():
        return []
    ids = []
    for org in sorted(p for p in store.root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        ids.extend(f"{org.name}/{repo.name}" for repo in sorted(org.iterdir()) if repo.is_dir())
    return ids


def _matches(record: dict[str, Any], query: dict[str, list[str]]) -> bool:
    repo_id = record["id"].lower()
    words = " ".join(query.get("search", [])).lower().split()
    if any(word not in repo_id for word in words):
        return False
    if any(tag not in record["tags"] for tag in query.get("filter", [])):
        return False
    author = query.get("author", [None])[-1]
    if author is not None and record["author"].lower() != author.lower():
        return False
    gated = query.get("gated", [None])[-1]
    return gated is None or (record["gated"] is not False) == (gated.lower() == "true")


def list_models(
    store: RepoStore, endpoint: str, query: dict[str, list[str]], max_page: int = MAX_PAGE
) -> tuple[int, Any, str | None]:
    """(status, page of records or error message, Link header or None) for one request.

    ``max_page`` caps the page size as the Hub's 1000 does (tests lower it to make paging visible).
    """
    sort = query.get("sort", ["trendingScore"])[-1]
    if sort not in SORT_FIELDS:
        return 400, f'"sort" must be one of [{", ".join(SORT_FIELDS)}]', None
    direction = query.get("direction", ["-1"])[-1]
    if direction not in ("-1", "1"):
        return 400, '"direction" must be one of [-1, 1]', None
    expand = query.get("expand", [])
    unknown = [e for e in expand if e not in EXPANDABLE]
    if unknown:
        return 400, f'"expand" must be one of [{", ".join(EXPANDABLE)}]', None
    try:
        limit = min(max_page, int(query.get("limit", [str(max_page)])[-1]))
    except ValueError:
        return 400, '"limit" must be a number', None
    if limit <= 0:
        return 400, '"limit" must be a positive number', None
    offset = 0
    if query.get("cursor"):
        decoded = _decode_cursor(query["cursor"][-1])
        if decoded is None:
            return 400, "Invalid cursor", None
        offset = decoded

    records = [repo_record(store, repo_id) for repo_id in _all_repo_ids(store)]
    matched = [r for r in records if _matches(r, query)]
    matched.sort(key=lambda r: r[sort], reverse=direction == "-1")  # stable: ties stay in id order
    page = matched[offset : offset + limit]
    fields = ("_id", "id", *expand) if expand else ("_id", "id", "modelId", *DEFAULT_FIELDS)
    body = [{k: r[k] for k in fields if k in r} for r in page]
    link = None
    if offset + limit < len(matched):
        params = [(k, v) for k, values in query.items() if k != "cursor" for v in values]
        params.append(("cursor", _encode_cursor(offset + limit)))
        link = f'<{endpoint}/api/models?{urlencode(params)}>; rel="next"'
    return 200, body, link


def _encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"models_offset": offset}).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> int | None:
    try:
        offset = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))["models_offset"]
    except (ValueError, KeyError, TypeError, binascii.Error):
        return None
    return offset if isinstance(offset, int) and offset >= 0 else None
