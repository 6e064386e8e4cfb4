"""Fetch a repo's branch catalog: all branches concurrently, cached on disk by commit.

One request for the refs, then every uncached branch's tree and small config files in parallel, so
a cold fetch costs about two round trips however many branches there are.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

from app import errors
from app.auth import read_token
from app.catalog.branch import BranchInfo
from app.catalog.branch_facts import FetchedBranch, build_branch_info
from app.catalog.cache import CachedRepo, CatalogCache
from app.catalog.hub_client import BranchRef, HubClient
from app.catalog.model_card import ModelCard, parse_model_card
from app.catalog.repo_ref import RepoRef
from app.paths import app_paths

# Errors that concern the whole repo or the user's access: no point listing other branches.
_REPO_LEVEL = (errors.GatedRepoError, errors.TokenRejectedError, errors.RepoNotFoundError)
# A gated repo's branch list and file tree are public; only its files need granted access. The table is
# shown from what is public, and only the download is gated.
_GATED_FILE_NOTE = "Its config files need access, so bits and group come from the branch name and card."


@dataclass(frozen=True)
class RepoCatalog:
    """Every branch of a repo, in display order, and how fresh the data is."""

    repo_id: str
    branches: tuple[BranchInfo, ...]
    fetched_at: float
    card: ModelCard
    stale: bool = False  # True when shown from the cache without a successful refresh
    stale_reason: str = ""
    access_note: str = ""  # set for a gated repo this user cannot download yet: what to do about it

    def branch(self, name: str) -> BranchInfo | None:
        """One branch by name."""
        return next((b for b in self.branches if b.branch == name), None)


def _display_order(names: list[str], card: ModelCard) -> list[str]:
    card_order = [r.branch for r in card.rows]
    return sorted(
        names,
        key=lambda n: (n != "main", card_order.index(n) if n in card_order else len(card_order), n),
    )


class Catalog:
    """Builds :class:`RepoCatalog` objects from the Hub and the disk cache."""

    def __init__(
        self,
        cache: CatalogCache | None = None,
        client_factory: Callable[[], HubClient] | None = None,
        max_workers: int = 32,
    ) -> None:
        self.cache = cache or CatalogCache(app_paths().catalog_cache_dir)
        self._client_factory = client_factory or (lambda: HubClient(token=read_token()))
        self.max_workers = max_workers

    def cached(self, ref: RepoRef) -> RepoCatalog | None:
        """The last table seen for this repo, from disk only (marked stale until refreshed)."""
        record = self.cache.load(ref.repo_id)
        if record is None:
            return None
        catalog = self._from_record(record, ref)
        if ref.branch and catalog.branch(ref.branch) is None:
            return None
        return replace(catalog, stale=True, stale_reason="Shown from the cache; not yet refreshed.")

    def fetch(self, ref: RepoRef) -> RepoCatalog:
        """Refresh from the Hub, re-fetching only branches whose commit moved.

        When the Hub cannot be reached and a cached table exists, that table is returned marked
        stale with the reason; otherwise the typed error is raised.
        """
        try:
            return self._fetch(ref)
        except (errors.NetworkError, errors.HubServerError) as exc:
            cached = self.cached(ref)
            if cached is None:
                raise
            return replace(cached, stale=True, stale_reason=exc.user_message)

    # -- internals ----------------------------------------------------------------------------------

    def _from_record(self, record: CachedRepo, ref: RepoRef) -> RepoCatalog:
        card = parse_model_card(record.card_text or "")
        names = [n for n in record.branch_order if n in record.branches]
        if ref.branch:
            names = [n for n in names if n == ref.branch]
        return RepoCatalog(record.repo_id, tuple(record.branches[n] for n in names), record.fetched_at, card)

    def _fetch(self, ref: RepoRef) -> RepoCatalog:
        client = self._client_factory()
        refs = client.branches(ref.repo_id)
        if not refs:
            raise errors.MalformedResponseError(
                f"{ref.repo_id} has no branches.", "Check the repo on the Hub."
            )
        if ref.branch and all(b.name != ref.branch for b in refs):
            names = ", ".join(sorted(b.name for b in refs))
            raise errors.RevisionNotFoundError(
                f"Branch '{ref.branch}' does not exist in {ref.repo_id}.", f"Its branches are: {names}."
            )
        record = self.cache.load(ref.repo_id) or CachedRepo(ref.repo_id, 0.0)
        card_ref = next((b for b in refs if b.name == "main"), refs[0])
        wanted = [b for b in refs if not ref.branch or b.name == ref.branch]
        todo = [b for b in wanted if (c := record.branches.get(b.name)) is None or c.commit != b.commit]
        card_text = record.card_text if record.card_commit == card_ref.commit else None
        need_card = card_text is None

        gated: list[errors.GatedRepoError] = []
        with ThreadPoolExecutor(max_workers=self.max_workers, thread_name_prefix="catalog") as pool:
            card_future = (
                pool.submit(client.text_file, ref.repo_id, card_ref.commit, "README.md", card_ref.name)
                if need_card
                else None
            )
            branch_futures = {b.name: self._submit_branch(pool, client, ref.repo_id, b) for b in todo}
            if card_future is not None:
                card_text = self._card_text(card_future, gated)
            card = parse_model_card(card_text or "")
            fresh = {
                name: self._collect(ref.repo_id, sub, card, gated) for name, sub in branch_futures.items()
            }

        branches = {n: b for n, b in record.branches.items() if any(r.name == n for r in refs)}
        branches.update(fresh)
        all_names = [b.name for b in refs]
        record = CachedRepo(
            ref.repo_id,
            time.time(),
            branches,
            _display_order([n for n in all_names if n in branches], card),
            card_ref.commit,
            card_text or "",
        )
        if gated:
            # Built without the gated files: shown, never cached, so a token added later gets the full facts.
            return replace(self._from_record(record, ref), access_note=gated[0].user_message)
        # A branch that failed to read is shown with its error but not cached, so the next refresh retries it.
        self.cache.save(replace(record, branches={n: b for n, b in branches.items() if not b.error}))
        return self._from_record(record, ref)

    @staticmethod
    def _card_text(future: Future[str | None], gated: list[errors.GatedRepoError]) -> str | None:
        try:
            return future.result()
        except errors.GatedRepoError as exc:
            gated.append(exc)
            return None
        except _REPO_LEVEL:
            raise
        except errors.QuantDeskError:
            return None  # a missing or unreadable card only costs the card's facts

    @staticmethod
    def _submit_branch(
        pool: ThreadPoolExecutor, client: HubClient, repo_id: str, branch: BranchRef
    ) -> tuple[BranchRef, dict[str, Future[Any]]]:
        c, n = branch.commit, branch.name
        return branch, {
            "tree": pool.submit(client.tree, repo_id, c, n),
            "config": pool.submit(client.json_file, repo_id, c, "config.json", n),
            "quantize_config": pool.submit(client.json_file, repo_id, c, "quantize_config.json", n),
            "tokenizer_config": pool.submit(client.json_file, repo_id, c, "tokenizer_config.json", n),
            "chat_template_jinja": pool.submit(client.text_file, repo_id, c, "chat_template.jinja", n),
        }

    @staticmethod
    def _collect(
        repo_id: str,
        submitted: tuple[BranchRef, dict[str, Future[Any]]],
        card: ModelCard,
        gated: list[errors.GatedRepoError],
    ) -> BranchInfo:
        branch, futures = submitted
        results: dict[str, Any] = {}
        problems: list[str] = []
        locked = False
        for key, future in futures.items():
            try:
                results[key] = future.result()
            except errors.GatedRepoError as exc:
                if key == "tree":
                    raise
                gated.append(exc)
                locked = True
                results[key] = None
            except _REPO_LEVEL:
                raise
            except errors.MalformedResponseError as exc:
                if key == "tree":
                    return _failed_branch(repo_id, branch, exc)
                problems.append(exc.message)
                results[key] = None
            except errors.QuantDeskError as exc:
                return _failed_branch(repo_id, branch, exc)
        fetched = FetchedBranch(
            repo_id=repo_id,
            branch=branch.name,
            commit=branch.commit,
            files=tuple(results["tree"]),
            config=results["config"],
            quantize_config=results["quantize_config"],
            tokenizer_config=results["tokenizer_config"],
            chat_template_jinja=results["chat_template_jinja"],
            problems=tuple(problems),
        )
        info = build_branch_info(fetched, card)
        # The warnings about missing config files would mislead: the files exist, they are locked.
        return replace(info, warnings=(_GATED_FILE_NOTE,)) if locked else info


def _failed_branch(repo_id: str, branch: BranchRef, exc: errors.QuantDeskError) -> BranchInfo:
    """A placeholder row for a branch that could not be read, carrying the reason."""
    return BranchInfo(
        repo_id=repo_id,
        branch=branch.name,
        commit=branch.commit,
        is_gptq=False,
        not_gptq_reason="the branch could not be read.",
        error=exc.user_message,
    )
