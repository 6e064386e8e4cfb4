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


class DownloadError(QuantDeskError):
    """A model download could not complete (beyond a Hub error)."""


class DiskFullError(DownloadError):
    """Not enough free disk space for the download, before it starts or mid-way (ENOSPC)."""


class VerificationError(DownloadError):
    """A downloaded file does not match the Hub's size or sha256, even after one fresh retry."""


class UnsafeFilenameError(DownloadError):
    """A repo lists a file name that would write outside the model folder (``..``, absolute, ``\\``)."""


# -- backends: choosing one, loading a model, generating ---------------------------------------------------


def _gib(n: int) -> str:
    return f"{n / 1024**3:.2f} GiB"


class BackendError(QuantDeskError):
    """Base class of failures choosing or using an inference backend."""


class BackendUnavailableError(BackendError):
    """The backend cannot run on this machine (package missing, no CUDA, wrong version)."""


class BackendRefusedError(BackendError):
    """The user asked for a backend that cannot run this branch here; the message says why."""


class NoCompatibleBackendError(BackendError):
    """No backend can run this branch here; the message lists every backend's reason."""


class ModelLoadError(BackendError):
    """Base class of failures loading a model."""


class MissingFilesError(ModelLoadError):
    """The model directory lacks files a backend needs (config, weights, tokenizer, a shard)."""

    def __init__(self, model_dir: str, missing: list[str], *, detail: str = "") -> None:
        self.missing = missing
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        super().__init__(
            f"The model in {model_dir} is incomplete: {shown} missing.",
            "Download the branch again (finished files are kept).",
            detail=detail,
        )


class UnsupportedArchitectureError(ModelLoadError):
    """The backend (or the installed transformers) does not know the model's architecture."""


class RemoteCodeConsentError(ModelLoadError):
    """The model needs its own Python code (trust_remote_code) and the user has not agreed to run it."""

    def __init__(self, model_dir: str, architecture: str, *, detail: str = "") -> None:
        self.architecture = architecture
        super().__init__(
            f"The model {architecture} in {model_dir} needs to run Python code shipped with it.",
            "Only allow this for repos you trust: enable 'Trust remote code' for this model to load it.",
            detail=detail,
        )


class OutOfMemoryError(ModelLoadError):
    """The model does not fit the memory available; shows the estimate against what is free."""

    def __init__(self, where: str, estimate_bytes: int, available_bytes: int, *, detail: str = "") -> None:
        self.where = where
        self.estimate_bytes = estimate_bytes
        self.available_bytes = available_bytes
        super().__init__(
            f"Not enough {where} memory: the model needs about {_gib(estimate_bytes)}, "
            f"{_gib(available_bytes)} is available.",
            "Close other programs, pick a smaller branch or a shorter context, or use a quantized cache.",
            detail=detail,
        )


class LoadCancelledError(ModelLoadError):
    """The user cancelled loading; nothing stays in memory."""


class PromptTooLongError(BackendError):
    """The prompt leaves no room to generate within the model's context length."""


# -- chat: templates, conversations, saved chats ------------------------------------------------------


class ChatError(QuantDeskError):
    """Base class of failures in the chat engine (templates, context budget, saved conversations)."""


class TemplateNotFoundError(ChatError):
    """No prompt template has the requested name."""


class ChatTemplateError(ChatError):
    """A prompt template could not be read or rendered (e.g. a model's Jinja template raised)."""


class ContextBudgetError(ChatError):
    """The messages that must stay in context (system prompt, pinned turns, the newest turn) do not fit."""


class MessageTooLongError(ContextBudgetError):
    """One message alone is larger than the context budget."""


class ConversationNotFoundError(ChatError):
    """A saved conversation (or message) does not exist."""


class ChatImportError(ChatError):
    """A conversation file to import is not a QuantDesk JSON export."""


class ChatStoreError(ChatError):
    """The conversations database could not be read or written (disk full, locked, damaged)."""


class ChatModelNotFoundError(ChatError):
    """The model to chat with is neither a model folder nor a downloaded REPO[:BRANCH]."""


# -- remote engines: OpenAI-compatible servers (vLLM, TGI, TabbyAPI, llama.cpp) ------------------------


class RemoteError(BackendError):
    """Base class of failures talking to an OpenAI-compatible server. Never carries the API key."""


class EndpointConfigError(RemoteError):
    """A saved endpoint (or a URL typed for one) is invalid, or no endpoint has the given name."""


class EndpointUnreachableError(RemoteError):
    """The server could not be reached: connection refused, unknown host, network down."""


class EndpointTimeoutError(RemoteError):
    """The server accepted the connection but did not answer in time."""


class EndpointAuthError(RemoteError):
    """The server refused the request's API key (401) or its permissions (403)."""

    def __init__(self, message: str, hint: str = "", *, status: int = 401, detail: str = "") -> None:
        super().__init__(message, hint, detail=detail)
        self.status = status


class RemoteModelNotFoundError(RemoteError):
    """The server does not serve the requested model id (404, or absent from ``GET /v1/models``)."""

    def __init__(
        self, message: str, hint: str = "", *, available: tuple[str, ...] = (), detail: str = ""
    ) -> None:
        super().__init__(message, hint, detail=detail)
        self.available = available


class EndpointNotCompatibleError(RemoteError):
    """The URL answers, but not as an OpenAI-compatible API (404 on its routes, or not JSON)."""


class RateLimitedError(RemoteError):
    """The server asked to slow down (429); ``retry_after`` is its Retry-After in seconds, if given."""

    def __init__(
        self, message: str, hint: str = "", *, retry_after: float | None = None, detail: str = ""
    ) -> None:
        super().__init__(message, hint, detail=detail)
        self.retry_after = retry_after


class RemoteServerError(RemoteError):
    """The server failed (5xx) or reported an error instead of a reply."""

    def __init__(self, message: str, hint: str = "", *, status: int = 500, detail: str = "") -> None:
        super().__init__(message, hint, detail=detail)
        self.status = status


class RemoteRequestError(RemoteError):
    """The server rejected the request itself (400/422: e.g. the prompt exceeds its context)."""


class RemoteStreamError(RemoteError):
    """A reply stream ended abnormally; ``partial_text`` is what had arrived (the chat keeps it)."""

    def __init__(self, message: str, hint: str = "", *, partial_text: str = "", detail: str = "") -> None:
        super().__init__(message, hint, detail=detail)
        self.partial_text = partial_text


class StreamInterruptedError(RemoteStreamError):
    """The connection broke mid-reply (server stopped, network cut, stall past the read timeout)."""


class MalformedStreamError(RemoteStreamError):
    """The server's event stream could not be read (not SSE, bad JSON, no choices)."""
