"""One typed error hierarchy for every failure a user can meet.

Each error carries ``message`` (what happened, in words a user understands) and ``hint`` (what to do
about it). The UI and the CLI show ``user_message``; ``detail`` holds technical context for a
collapsed "details" section and logs, never a token.
"""

from __future__ import annotations


class QuantDeskError(Exception):
    """Base class of every error QuantDesk reports to a user."""

    def __init__(self, message: str, hint: str = "", *, detail: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.detail = detail

    @property
    def user_message(self) -> str:
        """The message and the hint as one line for a dialog, a status bar or stderr."""
        return f"{self.message} {self.hint}".strip()


class InvalidRepoIdError(QuantDeskError):
    """The text typed as a repo is not ``org/name``, ``org/name:branch`` or a Hub URL."""


class HubError(QuantDeskError):
    """Base class of failures talking to the Hugging Face Hub."""


class RepoNotFoundError(HubError):
    """The repo does not exist, or is private and the token cannot see it."""


class GatedRepoError(HubError):
    """The repo is gated: no token was given, or the token has not been granted access."""


class TokenRejectedError(HubError):
    """The Hub refused the token itself (invalid or revoked)."""


class RevisionNotFoundError(HubError):
    """The branch (revision) does not exist in the repo."""


class NetworkError(HubError):
    """The Hub could not be reached at all (offline, DNS, refused, timed out)."""


class HubServerError(HubError):
    """The Hub answered with a server error (5xx) after retries."""


class MalformedResponseError(HubError):
    """The Hub answered, but with data QuantDesk cannot read."""
