"""The few Hub calls the catalog makes, with huggingface_hub's failures turned into QuantDesk errors.

huggingface_hub does the HTTP client, auth headers and error typing; this module retries every call
(refs, the file tree, small-file GETs) with QuantDesk's one bounded backoff (:mod:`app.retry`: 5xx, 429
and dropped connections, honouring Retry-After), reads the endpoint at call time (the library reads
``HF_ENDPOINT`` only at import) and maps every failure to :mod:`app.errors`. The tree is listed here
rather than with ``HfApi.list_repo_tree``, whose own retry loop waits out any Retry-After, however long.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote

import httpx2
from huggingface_hub import HfApi, get_session, hf_hub_url, hf_raise_for_status
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils._headers import build_hf_headers

from app import errors
from app.catalog.branch import FileEntry
from app.retry import DEFAULT_POLICY, BackoffPolicy, Transient, call_with_backoff, retry_after_from

DEFAULT_ENDPOINT = "https://huggingface.co"
_T = TypeVar("_T")
_TIMEOUT = 15.0
_MAX_TEXT_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class RemoteFile:
    """One file of a branch with both identities the Hub gives: git blob oid and, for LFS, sha256."""

    path: str
    size: int
    sha256: str | None  # LFS files only
    git_oid: str  # sha1 of the git blob (for LFS files: of the pointer file)


@dataclass(frozen=True)
class BranchRef:
    """A branch and the commit it points at."""

    name: str
    commit: str


def hub_endpoint() -> str:
    """The Hub base URL: ``HF_ENDPOINT`` if set (tests, mirrors), else huggingface.co."""
    return os.environ.get("HF_ENDPOINT", DEFAULT_ENDPOINT).rstrip("/")


class _TransientError(Transient):
    """A failure worth retrying (5xx, 429 or transport), with the server's Retry-After if it sent one."""

    def __init__(self, error: errors.HubError, retry_after: float | None = None) -> None:
        super().__init__(error, retry_after)
        self.error: errors.HubError = error


class HubClient:
    """Reads refs, trees and small text files of model repos."""

    def __init__(
        self, token: str | None = None, endpoint: str | None = None, policy: BackoffPolicy | None = None
    ) -> None:
        self.token = token
        self.endpoint = endpoint or hub_endpoint()
        self.policy = policy or DEFAULT_POLICY
        # token=False stops huggingface_hub from silently using a token file we did not choose.
        self._api = HfApi(endpoint=self.endpoint, token=token or False)

    # -- public calls -------------------------------------------------------------------------------

    def branches(self, repo_id: str) -> list[BranchRef]:
        """All branches of a repo with their commits."""
        refs = self._call(repo_id, None, lambda: self._api.list_repo_refs(repo_id, token=self.token or False))
        return [BranchRef(b.name, b.target_commit) for b in refs.branches]

    def tree(self, repo_id: str, commit: str, branch: str) -> list[FileEntry]:
        """Every file of the branch at ``commit`` (recursive), with sizes and LFS sha256."""
        return [FileEntry(f.path, f.size, f.sha256) for f in self.file_tree(repo_id, commit, branch)]

    def file_tree(self, repo_id: str, commit: str, branch: str) -> list[RemoteFile]:
        """Like :meth:`tree`, plus each file's git blob oid (lets an update skip unchanged small files).

        Pages are followed through the ``Link`` header; each page is retried on its own.
        """
        url: str | None = f"{self.endpoint}/api/models/{repo_id}/tree/{quote(commit, safe='')}"
        params: dict[str, str] | None = {"recursive": "true", "expand": "false"}
        files: list[RemoteFile] = []
        while url is not None:
            page, url = self._call(repo_id, branch, functools.partial(self._get_page, url, params))
            params = None  # the next-page URL carries its own query
            files.extend(_remote_file(entry) for entry in page if entry.get("type") == "file")
        return files

    def _get_page(self, url: str, params: dict[str, str] | None) -> tuple[list[dict[str, Any]], str | None]:
        headers = build_hf_headers(token=self.token or False)
        response = get_session().get(url, params=params, headers=headers, timeout=_TIMEOUT)
        hf_raise_for_status(response)
        page = response.json()
        if not isinstance(page, list) or not all(isinstance(entry, dict) for entry in page):
            raise ValueError("a tree page is not a list of entries")
        next_url = response.links.get("next", {}).get("url")
        return page, str(next_url) if next_url else None

    def branch_commit(self, repo_id: str, branch: str) -> str:
        """The commit a branch points at now; RevisionNotFoundError when there is no such branch."""
        for ref in self.branches(repo_id):
            if ref.name == branch:
                return ref.commit
        raise errors.RevisionNotFoundError(
            f"Branch '{branch}' does not exist in {repo_id}.", "Pick one of the repo's branches."
        )

    def map_error(self, exc: Exception, repo_id: str, branch: str | None) -> tuple[Exception, bool]:
        """(QuantDesk error for ``exc``, whether it is worth retrying), with the same wording as every call.

        Exceptions this module does not know are returned unchanged (not retryable).
        """
        translated = self._translate(exc, repo_id, branch)
        if isinstance(translated, _TransientError):
            return translated.error, True
        return translated, False

    def text_file(self, repo_id: str, commit: str, path: str, branch: str) -> str | None:
        """A small text file at ``commit``; None when the branch has no such file."""

        def fetch() -> str | None:
            url = hf_hub_url(repo_id, path, revision=quote(commit, safe=""), endpoint=self.endpoint)
            headers = build_hf_headers(token=self.token or False)
            response = get_session().get(url, headers=headers, follow_redirects=True, timeout=_TIMEOUT)
            try:
                hf_raise_for_status(response)
            except EntryNotFoundError:
                return None
            if len(response.content) > _MAX_TEXT_BYTES:
                raise errors.MalformedResponseError(
                    f"{path} in {repo_id} is too large to be a config file ({len(response.content)} bytes)."
                )
            return response.content.decode("utf-8", errors="replace")

        return self._call(repo_id, branch, fetch)

    def json_file(self, repo_id: str, commit: str, path: str, branch: str) -> dict[str, Any] | None:
        """A JSON object file; None when absent. Raises MalformedResponseError on invalid JSON."""
        text = self.text_file(repo_id, commit, path, branch)
        if text is None:
            return None
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise errors.MalformedResponseError(
                f"{path} on branch {branch} of {repo_id} is not valid JSON.", detail=str(exc)
            ) from exc
        if not isinstance(value, dict):
            raise errors.MalformedResponseError(
                f"{path} on branch {branch} of {repo_id} is not a JSON object."
            )
        return value

    # -- error handling -----------------------------------------------------------------------------

    def _call(self, repo_id: str, branch: str | None, fn: Callable[[], _T]) -> _T:
        """``fn()`` with its failures mapped to QuantDesk errors, transient ones retried by the policy."""

        def attempt() -> _T:
            try:
                return fn()
            except errors.QuantDeskError:
                raise
            except Exception as exc:
                raise self._translate(exc, repo_id, branch) from exc

        def give_up(transient: Transient) -> Exception:
            wait = transient.retry_after
            if wait is not None and self.policy.too_long(wait):
                return errors.HubServerError(
                    f"The Hub is limiting requests for {repo_id} and asks to wait {_duration(wait)}.",
                    f"Try again in {_duration(wait)}.",
                    detail=str(transient.error),
                )
            return transient.error

        return call_with_backoff(attempt, self.policy, give_up=give_up)

    def _translate(self, exc: Exception, repo_id: str, branch: str | None) -> Exception:
        repo_url = f"{self.endpoint}/{repo_id}"
        if isinstance(exc, GatedRepoError):
            if self.token:
                return errors.GatedRepoError(
                    f"{repo_id} is gated and your token has not been granted access to it.",
                    f"Open {repo_url} while logged in, accept the conditions, then try again.",
                )
            return errors.GatedRepoError(
                f"{repo_id} is gated: its files need a Hugging Face token from an account that accepted "
                "its conditions.",
                f"Accept them at {repo_url}, then add your token in Settings (or set HF_TOKEN).",
            )
        if isinstance(exc, RevisionNotFoundError):
            return errors.RevisionNotFoundError(
                f"Branch '{branch}' does not exist in {repo_id}.", "Pick one of the repo's branches."
            )
        if isinstance(exc, RepositoryNotFoundError):
            hint = "Check the spelling of org/name."
            hint += " If it is private, add a token that can read it." if not self.token else ""
            return errors.RepoNotFoundError(f"The model repo {repo_id} was not found on the Hub.", hint)
        if isinstance(exc, HfHubHTTPError):
            status = exc.response.status_code if exc.response is not None else 0
            if status == 401:
                return errors.TokenRejectedError(
                    "The Hub rejected your Hugging Face token (invalid or revoked).",
                    "Replace it in Settings or fix HF_TOKEN; public repos also work without a token.",
                )
            server_error = errors.HubServerError(
                f"The Hub answered with an error ({status}) while reading {repo_id}.",
                "The Hub may be busy or down; try again in a minute.",
            )
            # 501/505 say the request can never work there: fail at once instead of retrying for 30 s.
            if status in (501, 505):
                return server_error
            if status >= 500 or status == 429:
                headers = exc.response.headers if exc.response is not None else None
                return _TransientError(server_error, retry_after_from(headers))
            return errors.HubError(f"The Hub refused the request for {repo_id} ({status}).", detail=str(exc))
        if isinstance(exc, OfflineModeIsEnabled):
            return errors.NetworkError(
                "Hub access is switched off (HF_HUB_OFFLINE is set).", "Unset HF_HUB_OFFLINE to go online."
            )
        if isinstance(exc, httpx2.TransportError):
            return _TransientError(
                errors.NetworkError(
                    f"Could not reach the Hub at {self.endpoint}.",
                    "Check your internet connection (or proxy) and try again.",
                    detail=f"{exc.__class__.__name__}: {exc}",
                )
            )
        if isinstance(exc, ValueError | KeyError | TypeError):
            # huggingface_hub raises these when a response body is not the JSON it expects.
            return errors.MalformedResponseError(
                f"The Hub sent an answer for {repo_id} that QuantDesk cannot read.",
                "Try again later; if it persists, the Hub's API may have changed.",
                detail=f"{exc.__class__.__name__}: {exc}",
            )
        return exc


def _remote_file(entry: dict[str, Any]) -> RemoteFile:
    """A file entry of the Hub's tree listing (``lfs.oid`` is the sha256 of an LFS file's content)."""
    lfs = entry.get("lfs")
    return RemoteFile(
        path=str(entry["path"]),
        size=int(entry["size"]),
        sha256=str(lfs["oid"]) if isinstance(lfs, dict) and lfs.get("oid") else None,
        git_oid=str(entry.get("oid") or ""),
    )


def _duration(seconds: float) -> str:
    """``45 s``, ``3 min``, ``2 h``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.0f} h"
