"""What the transcript shows of each message: plain rows built from a conversation, no Qt.

The transcript's model holds these rows; the delegate paints them. Building rows is pure Python and
cheap (no layout, no Markdown), so a 1,000-message conversation turns into rows in a millisecond or two.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from app.backends.base import GenerationStats
    from app.chat.conversation import Conversation, Message
    from app.chat.message import ReplyStats

STOP_NOTES: Final = {
    "cancelled": "Stopped — the partial reply is kept.",
    "length": "Reached the length limit (max new tokens).",
    "error": "Interrupted — the partial reply is kept. Continue to resume.",
}
# Sampler fields worth a glance under a reply, in this order, with their short names.
_SAMPLER_FIELDS: Final = (
    ("temperature", "temperature"),
    ("top_p", "top p"),
    ("top_k", "top k"),
    ("min_p", "min p"),
    ("repetition_penalty", "repetition penalty"),
    ("seed", "seed"),
)

# Actions a message can offer; the delegate paints them in this order.
ACTION_TEXT: Final = {
    "copy": ("Copy", "Copy this message's text"),
    "edit": ("Edit", "Edit this message: a new version; the old one and its replies stay as a branch"),
    "pin": ("Pin", "Keep this turn in context"),
    "regenerate": ("Regenerate", "A new version of this reply (the old one stays, see ‹ ›)"),
    "continue": ("Continue", "Generate more of this reply"),
    "delete": ("Delete", "Delete this message or its branch (asks first)"),
}


@dataclass(frozen=True)
class MessageRow:
    """One message as the transcript shows it."""

    id: str
    role: str  # "user" or "assistant"
    text: str
    footer: str = ""
    interrupted: bool = False
    dropped: bool = False
    pinned: bool = False
    actions: tuple[str, ...] = ("copy",)
    version: tuple[int, int] = (1, 1)  # 1-based position among the message's versions, and their count
    streaming: bool = False

    @property
    def has_versions(self) -> bool:
        """Whether the message has other versions to switch to."""
        return self.version[1] > 1


def stats_text(stats: GenerationStats) -> str:
    """``42 tokens · 18.3 tokens/s · first token 0.21 s``."""
    return (
        f"{stats.new_tokens} tokens · {stats.tokens_per_second:.1f} tokens/s · "
        f"first token {stats.time_to_first_token:.2f} s"
    )


def reply_stats_text(stats: ReplyStats) -> str:
    """A stored reply's figures (``app.chat.conversation.ReplyStats``): tokens, speed, first token,
    backend and the sampler it ran with."""
    parts = [
        f"{stats.tokens} tokens",
        f"{stats.tokens_per_second:.1f} tokens/s",
        f"first token {stats.time_to_first_token_s:.2f} s",
    ]
    if stats.backend:
        parts.append(str(stats.backend))
    sampler = sampler_text(stats.sampler or {})
    if sampler:
        parts.append(sampler)
    return " · ".join(parts)


def sampler_text(sampler: dict[str, Any]) -> str:
    """``temperature 0.7, top p 0.9`` (fields that are set, in a fixed order; each one unbreakable)."""
    out = []
    for key, name in _SAMPLER_FIELDS:
        value = sampler.get(key)
        if value is None or (key == "top_k" and not value):
            continue
        text = f"{name} {value:g}" if isinstance(value, float) else f"{name} {value}"
        out.append(text.replace(" ", "\u00a0"))  # "top k 40" wraps as one piece
    return ", ".join(out)


def footer_text(role: str, stats: str, stop_reason: str | None, *, streaming: bool) -> str:
    """The line under a message: generating, its stats, how it ended."""
    parts: list[str] = []
    if streaming:
        parts.append("Generating… (Esc stops)")
    if stats and role == "assistant":
        parts.append(stats)
    note = STOP_NOTES.get(stop_reason or "")
    if note and role == "assistant" and not streaming:
        parts.append(note)
    return " · ".join(parts)


def active_messages(conversation: Conversation) -> list[Message]:
    """The messages on the conversation's active path (what the model sees), in order."""
    return conversation.active_path()


def message_stats_text(message: Message) -> str:
    """The stored stats of a reply, as text ("" when it has none)."""
    return reply_stats_text(message.stats) if message.stats is not None else ""


def rows_for(
    conversation: Conversation,
    dropped: frozenset[str] = frozenset(),
    *,
    interactive: bool,
    fresh_stats: dict[str, str] | None = None,
) -> list[MessageRow]:
    """The transcript's rows for the active path.

    ``interactive``: a model is loaded (edit, pin, regenerate and continue are offered; without one
    copy, delete and switching versions). ``fresh_stats``: stats text of replies this session streamed,
    for a core that does not store them.
    """
    messages = active_messages(conversation)
    rows = []
    for i, message in enumerate(messages):
        role = message.role.value
        last = i == len(messages) - 1
        actions: list[str] = ["copy"]
        if interactive:
            actions += ["edit", "pin"]
            if last and role == "assistant":
                actions += ["regenerate", "continue"]
        actions.append("delete")  # a storage change: offered with or without a model
        stats = message_stats_text(message) or (fresh_stats or {}).get(message.id, "")
        rows.append(
            MessageRow(
                id=message.id,
                role=role,
                text=message.content,
                footer=footer_text(role, stats, message.stop_reason, streaming=not message.complete),
                interrupted=message.stop_reason == "error",
                dropped=message.id in dropped,
                pinned=message.pinned,
                actions=tuple(actions),
                version=conversation.version_position(message.id),
                streaming=not message.complete,
            )
        )
    return rows
