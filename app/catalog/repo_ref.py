"""Parse what a user types as a repo: ``org/name``, ``org/name:branch`` or a Hub URL."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote, urlparse

from app.errors import InvalidRepoIdError

# The Hub's own rules: letters, digits, '-', '_', '.'; no leading/trailing '-' or '.'; no '--' or '..'.
_NAME = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?"
_REPO_ID = re.compile(rf"^(?P<org>{_NAME})/(?P<name>{_NAME})$")
_BRANCH = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}$")
_HUB_HOSTS = ("huggingface.co", "hf.co", "www.huggingface.co", "hf.xwall.us.kg")


@dataclass(frozen=True)
class RepoRef:
    """A repo on the Hub and, optionally, one branch of it."""

    repo_id: str
    branch: str | None = None

    @property
    def org(self) -> str:
        """The user or organisation part of the id."""
        return self.repo_id.split("/", 1)[0]

    @property
    def name(self) -> str:
        """The repo name without its organisation."""
        return self.repo_id.split("/", 1)[1]

    def __str__(self) -> str:
        return f"{self.repo_id}:{self.branch}" if self.branch else self.repo_id


def _invalid(text: str, why: str) -> InvalidRepoIdError:
    return InvalidRepoIdError(
        f"'{text}' is not a Hugging Face model repo ({why}).",
        "Type it as org/name (e.g. TheBloke/Llama-2-70B-GPTQ), org/name:branch, or paste the repo's URL.",
    )


def _validated(text: str, repo_id: str, branch: str | None) -> RepoRef:
    if ".." in repo_id or "--" in repo_id or not _REPO_ID.match(repo_id):
        raise _invalid(text, "the id must be org/name with letters, digits, '-', '_' or '.'")
    if branch is not None and (not _BRANCH.match(branch) or ".." in branch):
        raise _invalid(text, f"'{branch}' is not a valid branch name")
    return RepoRef(repo_id, branch or None)


def parse_repo_ref(text: str) -> RepoRef:
    """Parse a repo id, ``id:branch`` or a Hub URL (``.../org/name/tree/branch``) into a RepoRef."""
    stripped = text.strip()
    if not stripped:
        raise _invalid(text, "it is empty")
    if "://" in stripped or stripped.startswith(tuple(_HUB_HOSTS)):
        url = urlparse(stripped if "://" in stripped else f"https://{stripped}")
        if url.hostname not in _HUB_HOSTS:
            raise _invalid(text, "only huggingface.co URLs are understood")
        parts = [unquote(p) for p in url.path.split("/") if p]
        if parts and parts[0] in ("models",):
            parts = parts[1:]
        if parts and parts[0] in ("datasets", "spaces"):
            raise _invalid(text, "it is a dataset or Space, not a model")
        if len(parts) < 2:
            raise _invalid(text, "the URL does not name org/name")
        branch = None
        if len(parts) >= 4 and parts[2] in ("tree", "blob", "resolve"):
            # Branch names may contain '/', but after blob/resolve a file path follows: keep one segment.
            branch = "/".join(parts[3:]) if parts[2] == "tree" else parts[3]
        return _validated(text, f"{parts[0]}/{parts[1]}", branch)
    repo_id, sep, branch = stripped.partition(":")
    if sep and not branch:
        raise _invalid(text, "nothing follows ':'")
    return _validated(text, repo_id, branch if sep else None)
