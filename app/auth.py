"""The Hugging Face token: from ``HF_TOKEN``, the OS keyring, or (when there is no usable keyring)
this process's memory until it exits. Never from a plain file of ours.

The token is never logged or put into an error message.
"""

from __future__ import annotations

import contextlib
import os
import threading

KEYRING_SERVICE = "QuantDesk"
KEYRING_USER = "huggingface-token"

# Where no OS keyring works, a saved token lives here until the app closes (so "Save" still works).
_session_token: str | None = None
_session_lock = threading.Lock()

NO_KEYRING_HELP = (
    "For a token that lasts, install the keyrings.alt package and set "
    "PYTHON_KEYRING_BACKEND=keyrings.alt.file.EncryptedKeyring (an encrypted file keyring), "
    "or set the HF_TOKEN environment variable before starting QuantDesk."
)


def _keyring_token() -> str | None:
    try:
        import keyring

        stored = keyring.get_password(KEYRING_SERVICE, KEYRING_USER)
    except Exception:  # no keyring backend (headless Linux without Secret Service) means "no token"
        return None
    return stored.strip() if stored else None


def read_token() -> str | None:
    """The token to use: ``HF_TOKEN``, else the keyring's, else the one kept in memory; None if none."""
    env = os.environ.get("HF_TOKEN", "").strip()
    if env:
        return env
    return _keyring_token() or _session_token


def store_token(token: str) -> bool:
    """Save the token: in the OS keyring when one works (True), else in memory until exit (False).

    A keyring that raises, or that silently keeps nothing (the "null" backend), counts as none.
    """
    global _session_token
    token = token.strip()
    try:
        import keyring

        keyring.set_password(KEYRING_SERVICE, KEYRING_USER, token)
        kept = _keyring_token() == token
    except Exception:  # keyring's errors (no backend, locked, denied) all mean "not kept there"
        kept = False
    with _session_lock:
        _session_token = None if kept else token
    return kept


def delete_token() -> None:
    """Forget the token: the keyring's and the one kept in memory (no error when there is none)."""
    global _session_token
    with _session_lock:
        _session_token = None
    import keyring
    from keyring.errors import PasswordDeleteError

    with contextlib.suppress(PasswordDeleteError):
        keyring.delete_password(KEYRING_SERVICE, KEYRING_USER)


def token_status() -> str:
    """Where the token in use comes from, in one or two sentences (reads the keyring)."""
    if os.environ.get("HF_TOKEN", "").strip():
        return "HF_TOKEN is set in the environment; it is used instead of the keyring."
    if _keyring_token():
        return "A token is stored in the OS keyring."
    if _session_token:
        return (
            "No usable OS keyring: the token is kept in memory only, until QuantDesk closes. "
            + NO_KEYRING_HELP
        )
    return "No token: public repos only."


def whoami(token: str) -> str:
    """The Hub user name ``token`` belongs to (the Settings page's "Test token").

    Raises :class:`~app.errors.TokenRejectedError` for an invalid or revoked token,
    :class:`~app.errors.NetworkError` when the Hub cannot be reached, :class:`~app.errors.HubError` otherwise.
    Network and huggingface_hub are imported here, on the caller's (worker) thread.
    """
    import httpx2
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    from app import errors
    from app.catalog.hub_client import hub_endpoint

    endpoint = hub_endpoint()
    try:
        info = HfApi(endpoint=endpoint).whoami(token=token.strip())
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else 0
        if status == 401:
            raise errors.TokenRejectedError(
                "The Hub rejected this token (invalid or revoked).",
                "Copy a fresh token from huggingface.co/settings/tokens.",
            ) from exc
        raise errors.HubError(
            f"The Hub could not check the token ({status}).", "Try again later.", detail=str(exc)
        ) from exc
    except httpx2.TransportError as exc:
        raise errors.NetworkError(
            f"Could not reach the Hub at {endpoint}.",
            "Check your internet connection (or proxy) and try again.",
            detail=f"{exc.__class__.__name__}: {exc}",
        ) from exc
    name = info.get("name") if isinstance(info, dict) else None
    if not name:
        raise errors.MalformedResponseError("The Hub's answer did not name a user.", detail=str(info)[:500])
    return str(name)
