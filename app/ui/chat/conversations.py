"""The conversation side of the chat page: the list, the transcript, streaming into it, message actions
(copy, edit, pin, regenerate, continue, versions, delete) and export / import. It drives the page's
components through their methods and listens to their signals and the chat thread's; it owns no widget.

Switching conversations while a reply streams stops the reply (the partial text is saved in its own
conversation, marked "Stopped") and then opens the one chosen: one model serves one reply at a time,
and a reply nobody watches would hold the model while you type in another chat.
"""

from __future__ import annotations

import copy
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject
from PySide6.QtGui import QGuiApplication

from app.ui.chat.rows import MessageRow, footer_text, rows_for, stats_text
from app.ui.chat.transfer import FILTERS, export_name, export_text, read_export
from app.ui.chat.worker_data import ChatState, ReplyOutcome, StreamStart

if TYPE_CHECKING:
    from app.chat.conversation import Conversation
    from app.ui.chat.page import ChatPage

LAST_KEY = "chat/last_conversation"
STREAMING_ID = "__streaming__"


class ConversationSide(QObject):
    """Shows and manages conversations for the page."""

    def __init__(self, page: ChatPage) -> None:
        super().__init__(page)
        self.page = page
        self.current_id: str | None = None
        self.fresh_stats: dict[str, str] = {}  # replies streamed this session whose stats the core lacks
        self._pending: tuple[str, str | None] | None = None  # ("open", id) or ("new", None) after a stop
        listing, worker = page.conversation_list, page.controller.worker
        listing.conversation_selected.connect(self.open)
        listing.new_requested.connect(self.new_chat)
        listing.rename_requested.connect(lambda cid, _t: self.rename(cid))
        listing.delete_requested.connect(lambda cid, _t: self.delete(cid))
        listing.export_requested.connect(self.export_conversation)
        listing.import_requested.connect(self.import_conversation)
        page.transcript.action.connect(self._message_action)
        worker.state_changed.connect(page.show_state)
        worker.stream_started.connect(self._stream_started)
        worker.chunk.connect(self._chunk)
        worker.reply_finished.connect(self._reply_finished)

    # -- the list -------------------------------------------------------------------------------------

    def refresh(self) -> None:
        """Re-list saved conversations."""
        if not self.page.closed:
            self.page.conversation_list.set_summaries(self.page.store.list(), self.current_id)

    def reopen_last(self) -> None:
        """Open the conversation that was open when QuantDesk last closed (if it still exists)."""
        last = self.page.settings.value(LAST_KEY)
        if isinstance(last, str) and self.page.conversation_list.lists(last):
            self.page.conversation_list.select(last)

    def _load_saved(self, conversation_id: str) -> Conversation | None:
        from app.errors import QuantDeskError

        if self.page.closed:
            return None
        try:
            return self.page.store.load(conversation_id)
        except QuantDeskError as exc:
            self.page.errors.report(exc, "opening the conversation")
            return None

    def open(self, conversation_id: str) -> None:
        """Show a saved conversation (and continue it with the loaded model)."""
        page = self.page
        if page.streaming:
            self._pending = ("open", conversation_id)
            page.controller.stop()
            return
        conversation = self._load_saved(conversation_id)
        if conversation is None:
            return
        self._set_current(conversation.id)
        if page.info is not None:
            page.controller.open_conversation(conversation)
        else:
            page.state = ChatState(conversation, None, None)
            page.transcript.show_rows(self._rows(conversation, frozenset()))
            page.update_enabled()

    def new_chat(self, *, listed: bool = True) -> None:
        """Start a new conversation (Ctrl+N): listed at once (unless not ``listed``: after a delete),
        saved with its first message."""
        page = self.page
        if page.streaming:
            self._pending = ("new", None)
            page.controller.stop()
            return
        self._set_current(None)
        if page.info is not None:
            page.controller.open_conversation(None)  # the chat thread saves it: listed when it answers
        else:
            page.state = None
            page.transcript.clear()
            if listed:
                page.conversation_list.show_unsaved()  # saved once a model answers its first message
        page.composer.input.setFocus()
        page.update_enabled()

    def _set_current(self, conversation_id: str | None) -> None:
        if conversation_id != self.current_id:
            self.current_id = conversation_id
            self.page.settings.set_value(LAST_KEY, conversation_id or "")

    def conversation_to_continue(self) -> Conversation | None:
        """The conversation a newly loaded model should continue."""
        state = self.page.state
        if state is not None and state.conversation.messages:
            return state.conversation
        return self._load_saved(self.current_id) if self.current_id else None

    def model_gone(self) -> None:
        """The model was unloaded: the transcript stays, read-only."""
        if self.page.state is not None:
            self.page.transcript.show_rows(
                self._rows(self.page.state.conversation, frozenset()), keep_position=True
            )

    # -- showing states from the chat thread --------------------------------------------------------------

    def _rows(self, conversation: Conversation, dropped: frozenset[str]) -> list[MessageRow]:
        return rows_for(
            conversation, dropped, interactive=self.page.info is not None, fresh_stats=self.fresh_stats
        )

    def show_state(self, state: ChatState, *, keep_budget: bool = False) -> None:
        """Show a snapshot: the transcript of its active path and its budget."""
        page = self.page
        budget = state.budget
        if budget is None and keep_budget and page.state is not None:
            budget = page.state.budget
        page.state = replace(state, budget=budget)
        was = self.current_id
        self._set_current(state.conversation.id)  # with a model, even a new chat is saved at once
        if not page.conversation_list.lists(self.current_id):
            self.refresh()
        page.transcript.show_rows(
            self._rows(state.conversation, budget.dropped if budget else frozenset()),
            keep_position=was == self.current_id,
        )
        if budget is not None:
            page.budget.set_budget(budget)

    def _stream_started(self, start: StreamStart) -> None:
        page = self.page
        page.streaming = True
        page.show_state(start.state, keep_budget=True)
        if start.continuing_id and (row := page.transcript.row(start.continuing_id)) is not None:
            page.transcript.replace_row(
                replace(
                    row,
                    streaming=True,
                    footer=footer_text(row.role, "", None, streaming=True),
                    actions=("copy",),
                )
            )
        else:
            page.transcript.append_row(
                MessageRow(
                    STREAMING_ID,
                    "assistant",
                    "",
                    footer=footer_text("assistant", "", None, streaming=True),
                    streaming=True,
                )
            )
        # A new chat is listed when it is made (a new chat appears at once); the title its first message
        # gives it, and the new order, are shown when the reply ends. Refilling the list now - a read of
        # the database and a repaint of every entry, even for one retitled entry - took the GIL from the
        # model's thread as it started the reply: measured, it cost the reply more than all the
        # streaming that followed.
        if not page.conversation_list.lists(start.state.conversation.id):
            self.refresh()
        page.update_enabled()

    def _chunk(self, text: str) -> None:
        now = time.perf_counter()
        self.page.timing.setdefault("first", now)
        self.page.timing["last"] = now
        self.page.transcript.append_text(text)

    def _reply_finished(self, outcome: ReplyOutcome) -> None:
        page = self.page
        page.timing["done"] = time.perf_counter()
        page.streaming = False
        if outcome.message_id and outcome.stats is not None:
            self.fresh_stats[outcome.message_id] = stats_text(outcome.stats)
        if outcome.error is not None:
            page.errors.report(outcome.error, "generating the reply")
        pending, self._pending = self._pending, None
        if pending is None:
            page.show_state(outcome.state, keep_budget=True)  # the new budget follows from the chat thread
            self.refresh()
        page.reply_done.emit(outcome)
        if pending is not None:  # the user chose another chat while it streamed (the reply is saved)
            self.open(pending[1]) if pending[0] == "open" and pending[1] else self.new_chat()

    # -- message actions ------------------------------------------------------------------------------

    def _message_action(self, name: str, message_id: str) -> None:
        page = self.page
        row = page.transcript.row(message_id)
        if row is None:
            return
        if name == "copy":
            QGuiApplication.clipboard().setText(row.text)
        elif name == "edit":
            text = page.ask_text(
                "Edit message", "Message (the original stays as another version):", row.text, True
            )
            if text is not None and text.strip():
                page.edit_message(message_id, text)
        elif name == "pin":
            page.set_pinned(message_id, not row.pinned)
        elif name == "regenerate":
            page.regenerate()
        elif name == "continue":
            page.continue_reply()
        elif name in ("previous_version", "next_version"):
            self.switch_version(message_id, -1 if name == "previous_version" else 1)
        elif name == "delete":
            self.delete_message(message_id)

    def switch_version(self, message_id: str, step: int) -> None:
        """Show the previous (-1) or next (+1) version of a message, and the path below it."""
        page = self.page
        if page.state is None or page.streaming:
            return
        conversation = page.state.conversation
        versions = conversation.versions(message_id)
        at = [m.id for m in versions].index(message_id) + step
        if not 0 <= at < len(versions):
            return
        target = versions[at].id
        if page.info is not None:
            page.controller.select_version(target)
            return
        changed = copy.deepcopy(conversation)
        changed.select_version(target)
        self._save_local(changed)

    def delete_message(self, message_id: str) -> None:
        """Delete a message or its whole branch, after asking which."""
        page = self.page
        if page.state is None or page.streaming:
            return
        choice = page.ask_choice(
            "Delete",
            "Delete this message? Its replies and later turns can go with it (this branch), or stay.",
            ["Delete this message only", "Delete this message and all that follows"],
        )
        if choice is None:
            return
        branch = choice == 1
        if page.info is not None:
            page.controller.delete_message(message_id, branch)
            return
        changed = copy.deepcopy(page.state.conversation)
        (changed.delete_branch if branch else changed.delete_message)(message_id)
        self._save_local(changed)

    def _save_local(self, conversation: Conversation) -> None:
        # No model loaded: the page changes its copy and saves it (the chat thread is idle).
        self.page.store.sync(conversation)
        self.page.state = ChatState(conversation, None, None)
        self.page.transcript.show_rows(self._rows(conversation, frozenset()), keep_position=True)
        self.refresh()

    # -- the list's buttons ---------------------------------------------------------------------------

    def rename(self, conversation_id: str | None) -> None:
        """Rename a conversation."""
        page = self.page
        if not conversation_id:
            return
        title = page.ask_text("Rename conversation", "Title:", page.conversation_list.current_title(), False)
        if title is None or not title.strip():
            return
        page.store.rename(conversation_id, title.strip())
        if page.info is not None and conversation_id == self.current_id and page.state is not None:
            renamed = copy.deepcopy(page.state.conversation)
            renamed.title = title.strip()
            page.controller.open_conversation(renamed)
        self.refresh()

    def delete(self, conversation_id: str | None) -> None:
        """Delete a conversation (asks first)."""
        page = self.page
        if not conversation_id or page.streaming:
            return
        if not page.confirm(f"Delete the conversation '{page.conversation_list.current_title()}'?"):
            return
        page.store.delete(conversation_id)
        if conversation_id == self.current_id:
            self.new_chat(listed=False)
        self.refresh()

    def export_conversation(self, kind: str) -> Path | None:
        """Export the selected (or shown) conversation as Markdown ("md") or JSON ("json")."""
        page = self.page
        conversation_id = page.conversation_list.current_id() or self.current_id
        conversation = self._load_saved(conversation_id) if conversation_id else None
        if conversation is None:
            return None
        path = page.ask_save_path("Export conversation", FILTERS[kind], export_name(conversation, kind))
        if path is None:
            return None
        try:
            path.write_text(export_text(conversation, kind), encoding="utf-8")
        except OSError as exc:
            page.errors.report(exc, "exporting the conversation")
            return None
        return path

    def import_conversation(self) -> str | None:
        """Import a conversation exported as JSON; returns its id."""
        from app.errors import QuantDeskError

        page = self.page
        path = page.ask_open_path("Import conversation", FILTERS["json"])
        if path is None:
            return None
        try:
            conversation = page.store.import_json(read_export(path))
        except (OSError, QuantDeskError) as exc:
            page.errors.report(exc, "importing a conversation")
            return None
        self._set_current(conversation.id)
        self.refresh()
        self.open(conversation.id)
        return conversation.id
