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
