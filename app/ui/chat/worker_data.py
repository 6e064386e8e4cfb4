"""The values the chat page and its inference thread hand each other (frozen: safe across threads).

Requests go to :class:`app.ui.chat.worker.ChatWorker` as :class:`LoadRequest`; results come back as
:class:`LoadedInfo` (a model is loaded), :class:`ChatState` (a deep-copied snapshot of the session, with
its :class:`Budget` and :class:`TemplateInfo`), :class:`StreamStart` and :class:`ReplyOutcome` (a reply
begins and ends). Qt-free: nothing here imports Qt, torch or a backend.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from app.chat.profiles import EffectiveSettings, ModelSettings
from app.chat.session_setup import LocalTarget

if TYPE_CHECKING:
    from app.backends.base import GenerationStats
    from app.chat.conversation import Conversation
    from app.remote.endpoints import Endpoint
    from app.serve.gate import ModelGate
    from app.serve.service import ServedModel


@dataclass(frozen=True)
class LoadRequest:
    """What to load: a local folder or a saved endpoint, with this chat's settings layer."""

    local: LocalTarget | None = None
    endpoint: Endpoint | None = None
    chat_layer: ModelSettings = field(default_factory=ModelSettings)
    conversation: Conversation | None = None  # continue this conversation with the new model


@dataclass(frozen=True)
class BackendOption:
    """One backend in the override menu: usable here or not, and why."""

    name: str
    display_name: str
    compatible: bool
    reason: str


@dataclass(frozen=True)
class LoadedInfo:
    """What the page shows once a model is loaded."""

    title: str
    remote: bool
    backend: str  # display name
    backend_reason: str
    backend_overridden: bool
    options: tuple[BackendOption, ...]
    context_length: int
    memory_bytes: int
    estimate_bytes: int | None
    load_seconds: float
    profile_repo: str
    profile_branch: str
    model_settings: ModelSettings | None
    profile_settings: ModelSettings
    chat_layer: ModelSettings
    effective: EffectiveSettings
    profile_warning: str | None = None
    # A local model also offered to other apps ("Serve this model"): what the server serves and the gate
    # that gives the chat and API requests turns on the one model. None for a server's model.
    served: ServedModel | None = None
    gate: ModelGate | None = None


@dataclass(frozen=True)
class Budget:
    """The context budget of the next prompt: tokens per part, and what is out of context."""

    context_length: int
    system: int
    history: int
    reserve: int
    dropped: frozenset[str]
    error: str | None = None

    @property
    def used(self) -> int:
        """Tokens taken by the prompt plus the reply's reserve."""
        return self.system + self.history + self.reserve


@dataclass(frozen=True)
class TemplateInfo:
    """The template in use and where it came from."""

    name: str
    source: str
    detail: str
    overridden: bool


@dataclass(frozen=True)
class ChatState:
    """A snapshot of the session for the GUI (a deep copy: the worker keeps changing its own)."""

    conversation: Conversation
    budget: Budget | None
    template: TemplateInfo | None


@dataclass(frozen=True)
class StreamStart:
    """A reply starts streaming: the conversation before it, and the reply being continued (if any)."""

    state: ChatState
    continuing_id: str | None


@dataclass(frozen=True)
class ReplyOutcome:
    """A reply ended: the conversation after it (its budget follows in the next ChatState), its stats,
    and the error that cut it (if any)."""

    state: ChatState
    message_id: str | None
    stats: GenerationStats | None
    error: BaseException | None
