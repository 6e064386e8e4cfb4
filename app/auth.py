"""The Hugging Face token: from ``HF_TOKEN`` or the OS keyring, never from a plain file of ours.

The token is never logged or put into an error message.
"""

from __future__ import annotations

import os

KEYRING_SERVICE = "QuantDesk"
KEYRING_USER = "huggingface-token"


def read_token() -> str | None:
    """The token to use: ``HF_TOKEN`` wins over the keyring; None when neither has one."""
    env = os.environ.get("HF_TOKEN", "").strip()
    if env:
        return env
    try:
        import keyring

        stored = keyring.get_password(KEYRING_SERVICE, KEYRING_USER)
    except Exception:  # no keyring backend (headless Linux without Secret Service) means "no token"
        return None
    return stored.strip() if stored else None


def store_token(token: str) -> None:
    """Save the token in the OS keyring; raises keyring's error when no keyring is available."""
    import keyring

    keyring.set_password(KEYRING_SERVICE, KEYRING_USER, token.strip())


def delete_token() -> None:
    """Remove the token from the OS keyring (no error when there is none)."""
    import contextlib

    import keyring
    from keyring.errors import PasswordDeleteError

    with contextlib.suppress(PasswordDeleteError):
        keyring.delete_password(KEYRING_SERVICE, KEYRING_USER)


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
