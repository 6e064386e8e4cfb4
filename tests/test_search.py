"""Hub search: the emulator's /api/models against the real HfApi.list_models, and QuantDesk's search core."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from huggingface_hub import HfApi

from app import errors
from app.catalog.search import HubSearch, SearchCache
from app.catalog.search_query import SearchCursor, SearchQuery, SortKey, opens_a_repo
from tests.fixtures import RepoSpec
from tests.fixtures.hub_search_repos import search_repo_metadata
from tests.hub_emulator import Faults, HubEmulator

BASE_70B = "meta-llama/Llama-2-70b-hf"
LLAMA_70B_GPTQ = [
    "TheBloke/Llama-2-70B-Chat-GPTQ",
    "TheBloke/Llama-2-70B-GPTQ",
    "TheBloke/Nous-Hermes-Llama2-70B-GPTQ",
    "TheBloke/CodeLlama-70B-Instruct-GPTQ",
    "TheBloke/llama-2-70b-Guanaco-QLoRA-GPTQ",
    "TheBloke/Llama-2-70B-Orca-200k-GPTQ",
    "ModelCloud/Llama-2-70b-hf-gptq-4bit",
    "Qwant/llama-2-70b-GPTQ-3bit",
]


@pytest.fixture
def small_pages(
    fixture_specs: tuple[Path, dict[str, RepoSpec]], monkeypatch: pytest.MonkeyPatch
) -> Iterator[HubEmulator]:
    """The fixture repos behind an emulator that answers at most 4 models per page."""
    with HubEmulator(fixture_specs[0], models_page_size=4) as emulator:
        monkeypatch.setenv("HF_ENDPOINT", emulator.endpoint)
        yield emulator


def _api(hub: HubEmulator) -> HfApi:
    return HfApi(endpoint=hub.endpoint, token=False)


# -- the emulator, checked with the real client -------------------------------------------------------


def test_list_models_search_is_case_insensitive_on_every_word_and_sorts(hub: HubEmulator) -> None:
    found = list(_api(hub).list_models(search="LLAMA 70b GpTq", sort="downloads"))
    assert [m.id for m in found] == LLAMA_70B_GPTQ
    assert [m.downloads for m in found] == sorted((m.downloads or 0 for m in found), reverse=True)
    assert hub.requests[-1].query["sort"] == ["downloads"]
    by_likes = [m.id for m in _api(hub).list_models(search="llama 70b gptq", sort="likes")]
    meta = search_repo_metadata()
    assert by_likes == sorted(LLAMA_70B_GPTQ, key=lambda r: -meta[r]["likes"])
    for sort, field in (("last_modified", "lastModified"), ("trending_score", "trendingScore")):
        listed = [m.id for m in _api(hub).list_models(search="thebloke gptq", sort=sort)]  # type: ignore[arg-type]
        assert listed and hub.requests[-1].query["sort"] == [field]
        values = [meta[r][field] for r in listed if r in meta]
        assert values == sorted(values, reverse=True)


def test_list_models_filters_by_tag_base_model_and_author(hub: HubEmulator) -> None:
    quantized = {m.id for m in _api(hub).list_models(filter=f"base_model:quantized:{BASE_70B}")}
    meta = search_repo_metadata()
    assert quantized == {r for r, m in meta.items() if m.get("cardData", {}).get("base_model") == BASE_70B}
    gptq = {m.id for m in _api(hub).list_models(filter=[f"base_model:quantized:{BASE_70B}", "gptq"])}
    assert gptq == {"TheBloke/Llama-2-70B-GPTQ", "ModelCloud/Llama-2-70b-hf-gptq-4bit"}
    authors = {m.author for m in _api(hub).list_models(author="meta-llama", expand=["author"])}
    assert authors == {"meta-llama"}


def test_list_models_limit_and_expand_return_only_what_was_asked(hub: HubEmulator) -> None:
    models = list(_api(hub).list_models(search="llama 70b gptq", sort="downloads", limit=2, expand=["likes"]))
    assert [m.id for m in models] == LLAMA_70B_GPTQ[:2]
    assert models[0].likes == 1044 and models[0].downloads is None and models[0].tags is None
    assert hub.requests[-1].query["limit"] == ["2"] and len([r for r in hub.requests]) == 1
    full = next(iter(_api(hub).list_models(search="Llama-2-70B-Chat-GPTQ", expand=["tags", "lastModified"])))
    assert "base_model:quantized:meta-llama/Llama-2-70b-chat-hf" in (full.tags or [])
    assert full.last_modified is not None and full.last_modified.year == 2024


def test_list_models_pages_through_the_link_header(small_pages: HubEmulator) -> None:
    everything = [m.id for m in _api(small_pages).list_models(search="thebloke", sort="downloads")]
    pages = [r for r in small_pages.requests if r.path == "/api/models"]
    assert len(pages) == -(-len(everything) // 4) and len(everything) > 40
    assert all("cursor" in r.query for r in pages[1:])
    assert len(set(everything)) == len(everything)


# -- QuantDesk's search core --------------------------------------------------------------------------


def test_gptq_only_asks_for_the_tag_unless_the_words_say_gptq() -> None:
    assert ("filter", "gptq") in SearchQuery("llama 70b").stages()[0]
    assert ("filter", "gptq") not in SearchQuery("llama 70b GPTQ").stages()[0]
    assert ("filter", "gptq") not in SearchQuery("llama 70b", gptq_only=False).stages()[0]
    assert ("sort", "trendingScore") in SearchQuery("x", sort=SortKey.TRENDING).stages()[0]


def test_opens_a_repo_only_for_ids_and_urls() -> None:
    assert opens_a_repo("TheBloke/Llama-2-70B-GPTQ")
    assert opens_a_repo("TheBloke/Llama-2-70B-GPTQ:gptq-4bit-32g-actorder_True")
    assert opens_a_repo("https://huggingface.co/TheBloke/Llama-2-70B-GPTQ")
    assert opens_a_repo("https://example.com/a/b")  # a URL opens, and then says what is wrong
    assert not opens_a_repo("llama 70b gptq")
    assert not opens_a_repo("TheBloke/")
    assert not opens_a_repo("llama")


def test_search_pages_follow_the_cursor(small_pages: HubEmulator, tmp_path: Path) -> None:
    search = HubSearch(cache=SearchCache(tmp_path))
    query = SearchQuery("llama 70b gptq", page_size=3)
    first = search.first_page(query)
    assert [h.repo_id for h in first.hits] == LLAMA_70B_GPTQ[:3]
    assert first.cursor is not None
    seen = list(first.hits)
    cursor: SearchCursor | None = first.cursor
    while cursor is not None:
        page = search.page(query, cursor)
        seen.extend(page.hits)
        cursor = page.cursor
    assert [h.repo_id for h in seen] == LLAMA_70B_GPTQ
    hit = seen[0]
    assert hit.author == "TheBloke" and hit.is_gptq and hit.base_model == "meta-llama/Llama-2-70b-chat-hf"
    assert seen[-1].badges == ("GPTQ",)  # GPTQ by its name only (no gptq tag)


def test_quantized_versions_list_gptq_first_then_the_rest(hub: HubEmulator, tmp_path: Path) -> None:
    search = HubSearch(cache=SearchCache(tmp_path))
    query = SearchQuery(base_model=BASE_70B, gptq_only=False, page_size=50)
    hits, cursor = [], SearchCursor(0)
    while cursor is not None:
        page = search.page(query, cursor)
        hits.extend(page.hits)
        cursor = page.cursor  # type: ignore[assignment]
    ids = [h.repo_id for h in hits]
    assert ids[:2] == ["TheBloke/Llama-2-70B-GPTQ", "ModelCloud/Llama-2-70b-hf-gptq-4bit"]
    assert set(ids[2:]) == {
        "TheBloke/Llama-2-70B-GGUF",
        "TheBloke/Llama-2-70B-AWQ",
        "Qwant/llama-2-70b-GPTQ-3bit",
    }
    assert ids[2] == "Qwant/llama-2-70b-GPTQ-3bit"  # GPTQ by its name only: first of the rest
    assert len(ids) == len(set(ids))
    gptq_only = search.first_page(SearchQuery(base_model=BASE_70B))
    assert [h.repo_id for h in gptq_only.hits] == ids[:2] and gptq_only.cursor is None


def test_offline_the_cached_first_page_comes_back_stale(
    hub: HubEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    query = SearchQuery("llama 70b gptq")
    fresh = HubSearch(cache=SearchCache(tmp_path)).first_page(query)
    assert not fresh.stale
    down = HubSearch(endpoint="http://127.0.0.1:9", cache=SearchCache(tmp_path))
    stale = down.first_page(query)
    assert stale.stale and "Could not reach the Hub" in stale.stale_reason
    assert stale.hits == fresh.hits and stale.cursor is None
    with pytest.raises(errors.NetworkError, match="Could not reach the Hub"):
        down.first_page(SearchQuery("mistral"))  # never searched: nothing cached


@pytest.mark.parametrize(
    ("status", "error", "words"),
    [
        (429, errors.HubRateLimitedError, "limiting how fast"),
        (400, errors.SearchQueryError, "did not accept the search for 'llama'"),
        (401, errors.TokenRejectedError, "rejected your Hugging Face token"),
    ],
)
def test_hub_refusals_end_in_one_sentence_without_retrying(
    hub: HubEmulator, tmp_path: Path, status: int, error: type[Exception], words: str
) -> None:
    hub.faults = Faults(path_contains="/api/models", fail_first=5, fail_status=status)
    with pytest.raises(error, match=words):
        HubSearch(cache=SearchCache(tmp_path)).first_page(SearchQuery("llama"))
    assert len([r for r in hub.requests if r.path == "/api/models"]) == 1


def test_a_server_error_is_retried_once(hub: HubEmulator, tmp_path: Path) -> None:
    hub.faults = Faults(path_contains="/api/models", fail_first=1, fail_status=503)
    page = HubSearch(cache=SearchCache(tmp_path), sleep=lambda _s: None).first_page(SearchQuery("llama 70b"))
    assert page.hits
    hub.faults = Faults(path_contains="/api/models", fail_first=5, fail_status=503)
    with pytest.raises(errors.HubServerError, match=r"error \(503\) to the search for 'mistral'"):
        HubSearch(cache=SearchCache(tmp_path), sleep=lambda _s: None).first_page(SearchQuery("mistral"))


def test_queries_the_hub_would_refuse_are_refused_without_a_request(hub: HubEmulator, tmp_path: Path) -> None:
    search = HubSearch(cache=SearchCache(tmp_path))
    with pytest.raises(errors.SearchQueryError, match="too long"):
        search.first_page(SearchQuery("llama " * 50))
    with pytest.raises(errors.SearchQueryError, match="Nothing to search for"):
        search.first_page(SearchQuery("   "))
    assert hub.requests == []


def test_lookup_finds_a_repos_base_model(hub: HubEmulator, tmp_path: Path) -> None:
    hit = HubSearch(cache=SearchCache(tmp_path)).lookup("TheBloke/Llama-2-70B-GPTQ")
    assert hit is not None and hit.base_model == BASE_70B
    assert HubSearch(cache=SearchCache(tmp_path)).lookup("TheBloke/Nope") is None
