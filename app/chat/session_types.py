"""The chat session's data: its settings, a prompt preview, the end of a reply stream, and what it
needs of a store. Re-exported by :mod:`app.chat.engine`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from app.backends.base import GenerationStats, Sampling
from app.chat.conversation import ContextPlan, Conversation, Message
from app.chat.templates import Segment


@dataclass(frozen=True)
class ChatSettings:
    """Per-chat generation settings (already layered: see :mod:`app.chat.profiles`)."""

    system_prompt: str | None = None  # None: the template's default; "": no system prompt
    sampling: Sampling = field(default_factory=Sampling)
    extra_stop_strings: tuple[str, ...] = ()
    # Prepend the tokenizer's BOS to a built-in template's prompt (tokenizer_config.json's
    # add_bos_token: FastChat and text-generation-webui rely on the tokenizer adding it).
    add_bos: bool = False


@dataclass(frozen=True)
class PromptPreview:
    """The exact prompt the model would receive now, and how it was put together."""

    text: str  # BOS/EOS spelled as the tokenizer's strings
    token_ids: tuple[int, ...]
    segments: tuple[Segment, ...]
    plan: ContextPlan
    template: str
    template_source: str
    template_detail: str
    stop_strings: tuple[str, ...]

    @property
    def token_count(self) -> int:
        """Tokens of the prompt."""
        return len(self.token_ids)


@dataclass(frozen=True)
class ReplyEnd:
    """The last item of a reply stream."""

    message: Message  # the assistant message (also in the conversation)
    stats: GenerationStats
    plan: ContextPlan  # what was in context for this reply

    @property
    def out_of_context(self) -> tuple[str, ...]:
        """Ids of the messages the model did not see."""
        return self.plan.dropped


class ChatStoreLike(Protocol):
    """What the session needs of a store (implemented by :class:`app.chat.storage.ChatStore`)."""

    def sync(self, conversation: Conversation) -> None:
        """Write the conversation's header and what changed since it was last saved."""
        ...

    def update_message(self, message: Message) -> None:
        """Write one message's content, status and stats (the streaming reply)."""
        ...
