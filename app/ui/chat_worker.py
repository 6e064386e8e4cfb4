"""The chat page's inference thread: one QObject moved to a dedicated QThread (gpt4all's chatllm shape).

The GUI thread never touches the model. :class:`ChatController` (GUI thread) talks to
:class:`ChatWorker` (its own thread) through queued signals both ways: requests go in as signals
connected to the worker's slots, results come back as the worker's signals. The only direct calls
are :meth:`ChatWorker.stop` and :meth:`ChatWorker.cancel_load`, which just set a threading.Event.

Streamed text is batched on the worker: the first chunk is sent at once (time to first token), later
ones every :data:`FLUSH_SECONDS`, so a fast model cannot flood the GUI's event loop with one queued
signal per token.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Final

from PySide6.QtCore import QObject, QThread, Signal, Slot

from app.chat.profiles import EffectiveSettings, ModelSettings, ProfileStore
from app.chat.session_setup import LocalTarget, PeakRecorder
from app.errors import QuantDeskError

if TYPE_CHECKING:
    from app.backends.base import GenerationStats, LoadedModel
    from app.chat.conversation import Conversation
    from app.chat.detection import TemplateChoice
    from app.chat.engine import ChatSession, ChatSettings, ReplyEnd
    from app.chat.session_setup import ChatPlan
    from app.chat.storage import ChatStore
    from app.remote.endpoints import Endpoint
    from app.serve.gate import ModelGate
    from app.serve.service import ServedModel

FLUSH_SECONDS: Final = 0.04


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


class ChatWorker(QObject):
    """Lives on the chat thread; owns the model and the session."""

    load_progress = Signal(float, str)
    loaded = Signal(object)  # LoadedInfo
    load_failed = Signal(object)  # exception
    unloaded = Signal()
    state_changed = Signal(object)  # ChatState
    stream_started = Signal(object)  # StreamStart
    chunk = Signal(str)  # batched text of the streaming reply
    reply_finished = Signal(object)  # ReplyOutcome
    preview_ready = Signal(object)  # PromptPreview
    failed = Signal(object, str)  # exception, what was being done

    def __init__(self, store: ChatStore, profiles: ProfileStore | None = None) -> None:
        super().__init__()
        self.store = store
        self.profiles = profiles or ProfileStore()
        self.session: ChatSession | None = None
        self.model: LoadedModel | None = None
        self._plan: ChatPlan | None = None
        self._peaks: PeakRecorder | None = None  # keeps the peak memory after each reply (local models)
        self._detected: TemplateChoice | None = None
        self._cancel_load = threading.Event()
        # Set by Stop, cleared when the GUI asks for a new reply: a Stop pressed before the engine has
        # started the reply (the request is still queued) must not be lost.
        self._stop_requested = threading.Event()
        self.streaming = False

    # -- direct calls from the GUI thread (thread-safe) -------------------------------------------

    def stop(self) -> None:
        """Stop the streaming reply; the partial reply is kept."""
        self._stop_requested.set()
        session = self.session
        if session is not None:
            session.stop()

    def arm(self) -> None:
        """Forget an earlier Stop: called on the GUI thread just before a new reply is requested."""
        self._stop_requested.clear()

    def cancel_load(self) -> None:
        """Cancel a load in progress."""
        self._cancel_load.set()

    # -- loading ----------------------------------------------------------------------------------

    @Slot(object)
    def load(self, request: LoadRequest) -> None:
        """Unload what is loaded, then load the request's model and start a session."""
        self._cancel_load = cancel = threading.Event()
        self._release()
        try:
            if request.endpoint is not None:
                info = self._load_endpoint(request)
            else:
                assert request.local is not None
                info = self._load_local(request, cancel)
        except BaseException as exc:
            self._release()
            self.load_failed.emit(exc)
            return
        if request.conversation is not None and self.session is not None:
            meta = self.session.conversation.meta
            self.session.conversation = copy.deepcopy(request.conversation)
            self.session.conversation.meta = meta
        self.loaded.emit(info)
        self._emit_state()

    def _load_local(self, request: LoadRequest, cancel: threading.Event) -> LoadedInfo:
        from app.chat.engine import ChatSession
        from app.chat.session_setup import (
            chat_settings,
            load_local,
            local_meta,
            memory_estimate,
            plan_local_chat,
            record_memory,
            select_backend,
        )
        from app.serve.gate import GatedModel, ModelGate, Owner
        from app.serve.setup import served_model

        assert request.local is not None
        self.load_progress.emit(0.0, "Reading the model's files")
        plan = plan_local_chat(request.local, request.chat_layer, self.profiles)
        effective = plan.effective
        selection = select_backend(plan.files, str(effective.value("backend")))
        load_settings = effective.load_settings()
        estimate = memory_estimate(
            selection, plan.files, load_settings.context_length, load_settings.cache_type
        )
        model = load_local(selection, plan.files, load_settings, self.load_progress.emit, cancel)
        self.model = model
        profile = record_memory(self.profiles, plan, model)
        self._peaks = PeakRecorder(plan, model, load_settings.cache_type.value)
        settings = chat_settings(effective, plan.files)
        # The chat's replies take their turn at the gate the local server shares (never both at once).
        gate = ModelGate()
        session = ChatSession(
            GatedModel(model, gate, Owner.GUI), plan.choice, settings=settings, store=self.store
        )
        session.conversation.meta = local_meta(request.local, model.backend, plan.choice, settings)
        self.session, self._plan, self._detected = session, plan, plan.choice
        self.load_progress.emit(1.0, "Loaded")
        return LoadedInfo(
            title=plan.title,
            remote=False,
            backend=selection.backend.display_name,
            backend_reason=selection.reason,
            backend_overridden=selection.overridden,
            options=tuple(
                BackendOption(c.name, c.display_name, c.compatibility.compatible, c.compatibility.reason)
                for c in selection.considered
            ),
            context_length=model.context_length,
            memory_bytes=int(model.memory_bytes),
            estimate_bytes=estimate,
            load_seconds=model.load_seconds,
            profile_repo=plan.profile_repo,
            profile_branch=plan.profile_branch,
            model_settings=plan.model_settings,
            profile_settings=profile.settings,
            chat_layer=request.chat_layer,
            effective=effective,
            profile_warning=plan.profile_warning,
            served=served_model(plan, model),
            gate=gate,
        )

    def _load_endpoint(self, request: LoadRequest) -> LoadedInfo:
        from app.chat.engine import ChatSession
        from app.chat.profiles import effective_settings
        from app.chat.session_setup import chat_settings
        from app.remote.endpoints import connect, template_choice
        from app.remote.session import endpoint_profile_repo, remote_meta
        from app.remote.wire import display_url

        endpoint = request.endpoint
        assert endpoint is not None
        where = display_url(endpoint.base_url)
        self.load_progress.emit(0.2, f"Connecting to {where}")
        layer = request.chat_layer
        context = layer.context_length or endpoint.context_length
        model = connect(replace(endpoint, context_length=context))
        self.model = model
        repo = endpoint_profile_repo(endpoint)
        loaded = self.profiles.load(repo, model.model_id)
        profile_settings = loaded.profile.settings
        if not context and profile_settings.context_length:
            model.context_length = profile_settings.context_length
        choice = template_choice(endpoint, layer.template or profile_settings.template)
        effective = effective_settings(None, profile_settings, layer)
        settings = chat_settings(effective)
        session = ChatSession(model, choice, settings=settings, store=self.store)
        session.conversation.meta = remote_meta(model.model_id, where, choice, settings)
        self.session, self._plan, self._detected = session, None, choice
        self.load_progress.emit(1.0, "Connected")
        return LoadedInfo(
            title=f"{endpoint.name}: {model.model_id}",
            remote=True,
            backend="OpenAI-compatible server",
            backend_reason=f"{where} ({choice.detail})",
            backend_overridden=False,
            options=(),
            context_length=model.context_length,
            memory_bytes=0,
            estimate_bytes=None,
            load_seconds=model.load_seconds,
            profile_repo=repo,
            profile_branch=model.model_id,
            model_settings=None,
            profile_settings=profile_settings,
            chat_layer=layer,
            effective=effective,
            profile_warning=loaded.warning,
        )

    @Slot()
    def unload(self) -> None:
        """Free the model (the conversation stays saved)."""
        self._release()
        self.unloaded.emit()

    def _release(self) -> None:
        model, self.model, self.session, self._plan = self.model, None, None, None
        self._peaks = None
        if model is not None:
            model.unload()

    # -- conversation -----------------------------------------------------------------------------

    @Slot(object)
    def open_conversation(self, conversation: Conversation | None) -> None:
        """Continue ``conversation`` (None: a new, empty one) with the loaded model."""
        session = self.session
        if session is None:
            return
        meta = session.conversation.meta
        if conversation is None:
            session.reset()
            session.conversation.system_prompt = session.settings.system_prompt
        else:
            session.conversation = copy.deepcopy(conversation)
        session.conversation.meta = meta
        self._emit_state()

    @Slot(object)
    def apply_settings(self, settings: ChatSettings) -> None:
        """New sampler / system prompt for the session (the conversation's system prompt follows)."""
        session = self.session
        if session is None:
            return
        session.settings = replace(settings, add_bos=session.settings.add_bos)  # a property of the model
        session.conversation.system_prompt = settings.system_prompt
        self._emit_state()

    @Slot(str)
    def set_template(self, name: str) -> None:
        """Override the template ("" : back to the detected one)."""
        session = self.session
        if session is None:
            return
        try:
            if not name:
                assert self._detected is not None
                choice = self._detected
            elif self._plan is not None:
                from app.chat.detection import detect_for_model
                from app.chat.templates import load_user_templates

                choice = detect_for_model(
                    self._plan.files, chat_override=name, user_templates=load_user_templates()
                )
            else:
                from app.remote.endpoints import template_choice

                choice = template_choice(_endpoint_stub(), name)
            session.set_template(choice)
        except Exception as exc:
            self.failed.emit(exc, "changing the template")
        self._emit_state()

    @Slot(str, bool)
    def pin(self, message_id: str, pinned: bool) -> None:
        """Pin or unpin a message's turn."""
        if self.session is not None:
            try:
                self.session.set_pinned(message_id, pinned)
            except Exception as exc:
                self.failed.emit(exc, "pinning a turn")
            self._emit_state()

    @Slot(str)
    def select_version(self, message_id: str) -> None:
        """Make a version of a message active (the path below it follows)."""
        self._change(lambda s: s.select_version(message_id), "switching versions")

    @Slot(str, bool)
    def delete_message(self, message_id: str, branch: bool) -> None:
        """Delete a message (``branch``: and everything after it); the page asked the user first."""
        self._change(
            lambda s: s.delete_branch(message_id) if branch else s.delete_message(message_id),
            "deleting the branch" if branch else "deleting the message",
        )

    def _change(self, change: Any, what: str) -> None:
        session = self.session
        if session is None:
            return
        try:
            change(session)
        except Exception as exc:
            self.failed.emit(exc, what)
        self._emit_state()

    @Slot(object)
    def preview(self, pending: str | None) -> None:
        """The exact prompt for the conversation (plus ``pending`` text as the next message)."""
        if self.session is None:
            return
        try:
            self.preview_ready.emit(self.session.preview_prompt(pending or None))
        except Exception as exc:
            self.failed.emit(exc, "previewing the prompt")

    # -- replies ----------------------------------------------------------------------------------

    @Slot(str)
    def send(self, text: str) -> None:
        """Send a message and stream the reply."""
        self._run(lambda s: s.send(text), "sending the message")

    @Slot()
    def regenerate(self) -> None:
        """A new version of the last reply (the old one stays)."""
        self._run(lambda s: s.regenerate(), "regenerating the reply")

    @Slot()
    def continue_reply(self) -> None:
        """Stream more of the last reply."""
        self._run(lambda s: s.continue_reply(), "continuing the reply", continuing=True)

    @Slot(str, str)
    def edit(self, message_id: str, text: str) -> None:
        """A new version of a message (the old branch stays); an edited user message gets a new reply."""
        session = self.session
        if session is None:
            return
        from app.chat.templates import Role

        try:
            session.edit(message_id, text)
        except Exception as exc:
            self.failed.emit(exc, "editing the message")
            self._emit_state()
            return
        last = session.conversation.last()
        if last is not None and last.role is Role.USER:
            self._run(lambda s: s.reply(), "answering the edited message")
        else:
            self._emit_state()

    def _run(self, start: Any, what: str, continuing: bool = False) -> None:
        from app.chat.engine import ReplyEnd

        session = self.session
        if session is None:
            return
        try:
            chunks: Iterator[str | ReplyEnd] = start(session)
        except Exception as exc:
            self.failed.emit(exc, what)
            self._emit_state()
            return
        last = session.conversation.last()
        continuing_id = last.id if continuing and last is not None else None
        self.streaming = True
        self.stream_started.emit(StreamStart(self._state(budget=False), continuing_id))
        end: ReplyEnd | None = None
        error: BaseException | None = None
        pending: list[str] = []
        flushed = 0.0
        try:
            for item in chunks:
                if self._stop_requested.is_set():
                    session.stop()  # the generator checks it before the next token
                if isinstance(item, ReplyEnd):
                    end = item
                    continue
                pending.append(item)
                now = time.monotonic()
                if now - flushed >= FLUSH_SECONDS:
                    self.chunk.emit("".join(pending))
                    pending.clear()
                    flushed = now
        except Exception as exc:  # a stream cut mid-reply: the engine kept the partial reply
            error = exc
        finally:
            self.streaming = False
        if pending:
            self.chunk.emit("".join(pending))
        if end is not None and self._peaks is not None:
            warning = self._peaks.after_reply(end.stats.prompt_tokens)  # what the catalog's "measured" shows
            if warning:
                self.failed.emit(QuantDeskError(warning), "saving the memory measured")
        reply = session.conversation.last()
        # The reply is complete now; the next prompt's budget (a full prompt render and tokenize) follows
        # in its own state, so the page shows the finished reply without waiting for it.
        self.reply_finished.emit(
            ReplyOutcome(
                self._state(budget=False),
                end.message.id if end is not None else (reply.id if reply is not None else None),
                end.stats if end is not None else None,
                error,
            )
        )
        self._emit_state()

    # -- snapshots --------------------------------------------------------------------------------

    def _state(self, budget: bool = True) -> ChatState:
        session = self.session
        assert session is not None
        choice = session.choice
        template = TemplateInfo(choice.name, str(choice.source), choice.detail, self._detected is not choice)
        return ChatState(copy.deepcopy(session.conversation), self._budget() if budget else None, template)

    def _emit_state(self) -> None:
        if self.session is not None:
            self.state_changed.emit(self._state())

    def _budget(self) -> Budget | None:
        from app.errors import QuantDeskError

        session = self.session
        if session is None:
            return None
        context = session.model.context_length
        try:
            plan = session.preview_prompt().plan
        except QuantDeskError as exc:
            return Budget(context, 0, 0, session.reserve(), frozenset(), exc.user_message)
        # History: the messages in context with their template overhead. Everything else in the prompt
        # is the system prompt and the template's own text, which may carry a default system prompt
        # of its own (SmolLM2's Jinja template does): counted there, not as history.
        kept = set(plan.kept)
        history = sum(
            session.counter.message_tokens(m) for m in session.conversation.messages if m.id in kept
        )
        history = min(history, plan.prompt_tokens)
        return Budget(context, plan.prompt_tokens - history, history, plan.reserve, frozenset(plan.dropped))


def _endpoint_stub() -> Endpoint:
    from app.remote.endpoints import Endpoint

    return Endpoint(name="stub", base_url="http://localhost")


class ChatController(QObject):
    """The GUI thread's handle on the chat thread: requests out as queued signals, results in."""

    _load = Signal(object)
    _unload = Signal()
    _send = Signal(str)
    _regenerate = Signal()
    _continue = Signal()
    _edit = Signal(str, str)
    _pin = Signal(str, bool)
    _open = Signal(object)
    _settings = Signal(object)
    _template = Signal(str)
    _preview = Signal(object)
    _select_version = Signal(str)
    _delete = Signal(str, bool)

    def __init__(self, store: ChatStore, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.chat_thread = QThread()
        self.chat_thread.setObjectName("quantdesk-chat")
        self.worker = ChatWorker(store)
        self.worker.moveToThread(self.chat_thread)
        for signal, slot in (
            (self._load, self.worker.load),
            (self._unload, self.worker.unload),
            (self._send, self.worker.send),
            (self._regenerate, self.worker.regenerate),
            (self._continue, self.worker.continue_reply),
            (self._edit, self.worker.edit),
            (self._pin, self.worker.pin),
            (self._open, self.worker.open_conversation),
            (self._settings, self.worker.apply_settings),
            (self._template, self.worker.set_template),
            (self._preview, self.worker.preview),
            (self._select_version, self.worker.select_version),
            (self._delete, self.worker.delete_message),
        ):
            signal.connect(slot)
        self._stopped = False

    def _started(self) -> ChatController:
        # The thread starts with the first request: a window that never chats never runs it.
        if not self.chat_thread.isRunning() and not self._stopped:
            self.chat_thread.start()
        return self

    def load(self, request: LoadRequest) -> None:
        """Load a model (replacing the loaded one)."""
        self._started()._load.emit(request)

    def unload(self) -> None:
        """Free the model."""
        self._started()._unload.emit()

    def send(self, text: str) -> None:
        """Send a message."""
        self.worker.arm()
        self._started()._send.emit(text)

    def regenerate(self) -> None:
        """Regenerate the last reply."""
        self.worker.arm()
        self._started()._regenerate.emit()

    def continue_reply(self) -> None:
        """Continue the last reply."""
        self.worker.arm()
        self._started()._continue.emit()

    def edit(self, message_id: str, text: str) -> None:
        """Edit a message."""
        self.worker.arm()
        self._started()._edit.emit(message_id, text)

    def pin(self, message_id: str, pinned: bool) -> None:
        """Pin or unpin a turn."""
        self._started()._pin.emit(message_id, pinned)

    def open_conversation(self, conversation: Conversation | None) -> None:
        """Continue a conversation (None: a new one) with the loaded model."""
        self._started()._open.emit(conversation)

    def apply_settings(self, settings: ChatSettings) -> None:
        """New sampler / system prompt."""
        self._started()._settings.emit(settings)

    def set_template(self, name: str) -> None:
        """Override the template ("" for the detected one)."""
        self._started()._template.emit(name)

    def preview(self, pending: str | None = None) -> None:
        """Ask for the exact prompt (answered by ``worker.preview_ready``)."""
        self._started()._preview.emit(pending)

    def select_version(self, message_id: str) -> None:
        """Make a version of a message active."""
        self._started()._select_version.emit(message_id)

    def delete_message(self, message_id: str, branch: bool) -> None:
        """Delete a message (``branch``: with everything after it); ask the user first."""
        self._started()._delete.emit(message_id, branch)

    def stop(self) -> None:
        """Stop the streaming reply (direct: sets an event)."""
        self.worker.stop()

    def cancel_load(self) -> None:
        """Cancel a load (direct: sets an event)."""
        self.worker.cancel_load()

    def shutdown(self, timeout_ms: int = 30_000) -> bool:
        """Stop generation, free the model on its thread, end the thread (the partial reply is saved by
        the engine as the stream ends). Returns whether the thread ended in time."""
        if self._stopped:
            return True
        self._stopped = True
        self.worker.cancel_load()
        self.worker.stop()
        if not self.chat_thread.isRunning():
            return True
        self._unload.emit()
        self.chat_thread.quit()
        return bool(self.chat_thread.wait(timeout_ms))
