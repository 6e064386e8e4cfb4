"""One message of a conversation tree, and the figures kept with each reply."""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Final

from app.backends.base import GenerationStats
from app.chat.templates import ChatMessage, Role

_PREVIEW_CHARS: Final = 40


def new_id() -> str:
    """A random, URL-safe id for a conversation or a message."""
    return uuid.uuid4().hex


@dataclass
class ReplyStats:
    """How one reply was generated: shown under the reply, saved with it, shown again after a restart.

    A continued reply adds the continuation's tokens and seconds to the first part's.
    """

    tokens: int  # new tokens of the reply
    tokens_per_second: float
    time_to_first_token_s: float
    backend: str | None = None
    sampler: dict[str, Any] = field(default_factory=dict)
    created_at: float = field(default_factory=time.time)
    prompt_tokens: int = 0
    seconds: float = 0.0  # generation time (the tokens/s denominator)

    @classmethod
    def of_generation(
        cls,
        stats: GenerationStats,
        backend: str | None,
        sampler: dict[str, Any],
        earlier: ReplyStats | None = None,
    ) -> ReplyStats:
        """The figures of a reply from its generation's stats; ``earlier``: the reply's stats before
        a Continue, added to the continuation's."""
        tokens, seconds = stats.new_tokens, stats.seconds
        first = stats.time_to_first_token
        if earlier is not None:
            tokens, seconds = tokens + earlier.tokens, seconds + earlier.seconds
            first = earlier.time_to_first_token_s
        return cls(
            tokens=tokens,
            tokens_per_second=tokens / seconds if seconds > 0 and tokens else 0.0,
            time_to_first_token_s=first,
            backend=backend,
            sampler=sampler,
            prompt_tokens=stats.prompt_tokens,
            seconds=seconds,
        )

    def summary(self) -> str:
        """``42 tokens · 18.3 tokens/s · first token 0.21 s``: the line under a reply."""
        return (
            f"{self.tokens} tokens · {self.tokens_per_second:.1f} tokens/s · "
            f"first token {self.time_to_first_token_s:.2f} s"
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (saved in the database and in exports)."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: object) -> ReplyStats | None:
        """Stats from :meth:`to_json` output; None for anything unreadable (never worth an error)."""
        if not isinstance(data, Mapping):
            return None
        try:
            sampler = data.get("sampler") or {}
            backend = data.get("backend")
            return cls(
                tokens=int(data["tokens"]),
                tokens_per_second=float(data["tokens_per_second"]),
                time_to_first_token_s=float(data["time_to_first_token_s"]),
                backend=backend if isinstance(backend, str) else None,
                sampler=dict(sampler) if isinstance(sampler, Mapping) else {},
                created_at=float(data.get("created_at", time.time())),
                prompt_tokens=int(data.get("prompt_tokens", 0)),
                seconds=float(data.get("seconds", 0.0)),
            )
        except (KeyError, TypeError, ValueError):
            return None


@dataclass
class Message:
    """One message of a conversation (user or assistant; the system prompt is the conversation's).

    ``parent_id`` is the message this one follows (None for the first message of a branch at the
    root); messages with the same parent are versions of each other.
    """

    role: Role
    content: str
    id: str = field(default_factory=new_id)
    pinned: bool = False
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    # False while a reply streams, and for a reply cut off by a crash (found so on reopening).
    complete: bool = True
    stop_reason: str | None = None  # StopReason value for assistant replies
    token_count: int | None = None  # tokens of the content alone, once counted
    parent_id: str | None = None
    stats: ReplyStats | None = None  # assistant replies: how this version was generated

    def as_chat(self) -> ChatMessage:
        """The message as a template sees it."""
        return ChatMessage(self.role, self.content)

    def preview(self) -> str:
        """The start of the content on one line, for messages that name a message."""
        text = " ".join(self.content.split())
        return text if len(text) <= _PREVIEW_CHARS else text[: _PREVIEW_CHARS - 1] + "…"
