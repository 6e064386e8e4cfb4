"""The chat page's inference thread: one QObject moved to a dedicated QThread (gpt4all's chatllm shape).

The GUI thread never touches the model. :class:`app.ui.chat.controller.ChatController` (GUI thread)
talks to :class:`ChatWorker` (its own thread) through queued signals both ways: requests go in as
signals connected to the worker's slots, results come back as the worker's signals. The only direct
calls are :meth:`ChatWorker.stop`, :meth:`ChatWorker.arm` and :meth:`ChatWorker.cancel_load`, which just
set or clear a threading.Event.

Streamed text is batched on the worker: the first chunk is sent at once (time to first token), later
ones every :data:`FLUSH_SECONDS`, so a fast model cannot flood the GUI's event loop with one queued
signal per token.

Loading lives in :mod:`app.ui.chat.worker_loading`; the values sent to the page in
:mod:`app.ui.chat.worker_data`.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Final

from PySide6.QtCore import QObject, Signal, Slot

from app.chat.profiles import ProfileStore
from app.errors import QuantDeskError
from app.ui.chat.worker_data import Budget, ChatState, LoadRequest, ReplyOutcome, StreamStart, TemplateInfo
from app.ui.chat.worker_loading import LoadedSession, connect_endpoint, load_local_model

if TYPE_CHECKING:
    from app.backends.base import LoadedModel
    from app.chat.conversation import Conversation
    from app.chat.detection import TemplateChoice
    from app.chat.engine import ChatSession, ChatSettings, ReplyEnd
    from app.chat.session_setup import ChatPlan, PeakRecorder
    from app.chat.storage import ChatStore
    from app.remote.endpoints import Endpoint

FLUSH_SECONDS: Final = 0.04


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
            loaded: LoadedSession
            if request.endpoint is not None:
                loaded = connect_endpoint(request, self.profiles, self.store, self.load_progress.emit)
            else:
                loaded = load_local_model(request, self.profiles, self.store, self.load_progress.emit, cancel)
        except BaseException as exc:
            self._release()
            self.load_failed.emit(exc)
            return
        self.model, self._peaks = loaded.model, loaded.peaks
        self.session, self._plan, self._detected = loaded.session, loaded.plan, loaded.detected
        if request.conversation is not None:
            meta = self.session.conversation.meta
            self.session.conversation = copy.deepcopy(request.conversation)
            self.session.conversation.meta = meta
        self.loaded.emit(loaded.info)
        self._emit_state()

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
        reply = session.conversation.last()
        # The reply is complete now. What follows it - the peak memory written for the catalog's
        # "measured" (a file written and flushed), the next prompt's budget (a full prompt render and
        # tokenize) - comes after, so the page shows the finished reply without waiting for either.
        self.reply_finished.emit(
            ReplyOutcome(
                self._state(budget=False),
                end.message.id if end is not None else (reply.id if reply is not None else None),
                end.stats if end is not None else None,
                error,
            )
        )
        if end is not None and self._peaks is not None:
            warning = self._peaks.after_reply(end.stats.prompt_tokens)
            if warning:
                self.failed.emit(QuantDeskError(warning), "saving the memory measured")
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
