"""A conversation is a tree of messages; the active path through it is the chat the model sees.

Editing a message adds a new version of it (a sibling: same parent) and makes it active; the old
version and everything after it stay as another branch. A new reply (Regenerate) is another version
of the reply. Each node remembers which of its children is active; the active path starts at the
active root version and follows the active child of each node down to a leaf. Only
:meth:`Conversation.delete_message` and :meth:`Conversation.delete_branch` remove anything.

The conversation also remembers which messages changed since it was last saved (or loaded), so a
store writes a turn, not the whole conversation again.

The budget planner lives in :mod:`app.chat.budget`; its names are re-exported here.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from app.chat.budget import ContextPlan, TokenCounter, group_turns, plan_context
from app.chat.message import Message, ReplyStats, new_id
from app.chat.templates import ChatMessage, Role

__all__ = [
    "ChatMeta",
    "ContextPlan",
    "Conversation",
    "Message",
    "PendingChanges",
    "ReplyStats",
    "TokenCounter",
    "group_turns",
    "new_id",
    "plan_context",
]

# The key of the root's children (messages without a parent) in the tree maps.
_ROOT: None = None


@dataclass
class ChatMeta:
    """Which model, template and sampler a conversation used (saved and exported with it)."""

    repo_id: str | None = None
    branch: str | None = None
    commit: str | None = None
    model_dir: str | None = None
    backend: str | None = None
    template: str | None = None
    template_source: str | None = None
    sampler: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PendingChanges:
    """What changed since the conversation was last saved: messages to write and ids to delete."""

    messages: tuple[Message, ...]  # in creation order
    removed: tuple[str, ...]


@dataclass
class Conversation:
    """A chat: its system prompt (None: the template's default; "": none) and its tree of messages."""

    id: str = field(default_factory=new_id)
    title: str = ""
    system_prompt: str | None = None
    meta: ChatMeta = field(default_factory=ChatMeta)
    created_at: float = field(default_factory=time.time)
    # The tree: every message by id (creation order), children per parent (oldest first), the active
    # child per parent. Changed only through the methods below, which keep the three consistent.
    _nodes: dict[str, Message] = field(default_factory=dict, init=False, repr=False)
    _children: dict[str | None, list[str]] = field(default_factory=dict, init=False, repr=False)
    _active: dict[str | None, str] = field(default_factory=dict, init=False, repr=False)
    _unsaved: set[str] = field(default_factory=set, init=False, repr=False, compare=False)
    _removed: set[str] = field(default_factory=set, init=False, repr=False, compare=False)

    # -- reading ------------------------------------------------------------------------------------

    def active_path(self) -> list[Message]:
        """The messages the model sees, first to last: the active version at every level."""
        path: list[Message] = []
        key: str | None = _ROOT
        while (child := self._active_child(key)) is not None:
            path.append(self._nodes[child])
            key = child
        return path

    @property
    def messages(self) -> list[Message]:
        """The active path (a new list each time): what older callers knew as the message list."""
        return self.active_path()

    def all_messages(self) -> list[Message]:
        """Every message of every branch, in creation order."""
        return list(self._nodes.values())

    def get(self, message_id: str) -> Message:
        """The message with ``message_id`` (on any branch); KeyError when there is none."""
        return self._nodes[message_id]

    def __contains__(self, message_id: object) -> bool:
        return message_id in self._nodes

    def index(self, message_id: str) -> int:
        """Position of a message on the active path; KeyError when it is not on it."""
        for i, message in enumerate(self.active_path()):
            if message.id == message_id:
                return i
        raise KeyError(message_id)

    def last(self, role: Role | None = None) -> Message | None:
        """The last message of the active path (of ``role``), if any."""
        return next((m for m in reversed(self.active_path()) if role is None or m.role is role), None)

    def children(self, message_id: str | None) -> list[Message]:
        """The messages that follow ``message_id`` (None: the root versions), oldest first."""
        return [self._nodes[i] for i in self._children.get(message_id, [])]

    def path_to(self, message_id: str) -> list[Message]:
        """The messages from the root down to ``message_id`` (included)."""
        path = [self._nodes[message_id]]
        while (parent := path[-1].parent_id) is not None:
            path.append(self._nodes[parent])
        return path[::-1]

    def versions(self, message_id: str) -> list[Message]:
        """The versions of a message: it and its siblings (same parent), oldest first."""
        return self.children(self._nodes[message_id].parent_id)

    def version_position(self, message_id: str) -> tuple[int, int]:
        """``(n, count)``: the message is version n (1-based) of count, as in ``‹ 2/3 ›``."""
        siblings = self._children[self._nodes[message_id].parent_id]
        return siblings.index(message_id) + 1, len(siblings)

    def is_active(self, message_id: str) -> bool:
        """Whether the message is the active version among its siblings."""
        return self._active_child(self._nodes[message_id].parent_id) == message_id

    def chat_messages(self, ids: Iterable[str], system: str | None) -> list[ChatMessage]:
        """The template's input: the system prompt (if any) and the active-path messages in ``ids``."""
        wanted = set(ids)
        out = [ChatMessage(Role.SYSTEM, system)] if system else []
        return out + [m.as_chat() for m in self.active_path() if m.id in wanted]

    # -- growing ------------------------------------------------------------------------------------

    def add(self, role: Role, content: str, *, pinned: bool = False, complete: bool = True) -> Message:
        """Append a message to the end of the active path and return it (the first user message also
        titles an untitled chat)."""
        last = self.last()
        return self.add_child(last.id if last else _ROOT, role, content, pinned=pinned, complete=complete)

    def add_child(
        self, parent_id: str | None, role: Role, content: str, *, pinned: bool = False, complete: bool = True
    ) -> Message:
        """Add a message after ``parent_id`` (None: a new root version) and make it the active one
        there. A parent that already has children gets a new version of them (e.g. a new reply)."""
        if parent_id is not None and parent_id not in self._nodes:
            raise KeyError(parent_id)
        message = Message(role, content, pinned=pinned, complete=complete, parent_id=parent_id)
        self._attach(message)
        self._set_active(message.id)
        if not self.title and role is Role.USER:
            self.title = message.preview()
        return message

    def edit(self, message_id: str, content: str) -> Message:
        """A new version of a message with ``content``, made active (returned); the old version and
        everything after it stay as another branch. Unchanged content returns the message itself."""
        old = self._nodes[message_id]
        if content == old.content:
            return old
        return self.add_child(old.parent_id, old.role, content, pinned=old.pinned)

    def select_version(self, message_id: str) -> None:
        """Make a message the active version (and its ancestors, so it is on the active path); the path
        below it follows the active child of each node from there."""
        for message in self.path_to(message_id):
            self._set_active(message.id)

    def set_pinned(self, message_id: str, pinned: bool = True) -> None:
        """Pin (or unpin) a message: its turn then never drops out of context."""
        self._nodes[message_id].pinned = pinned
        self._unsaved.add(message_id)

    # -- explicit deletes (the UI confirms first) ---------------------------------------------------

    def delete_message(self, message_id: str) -> Message:
        """Delete one message; what followed it moves up to its parent (nothing else is lost).

        If it was the active version, its active child takes its place on the path, else a neighbouring
        version does.
        """
        message = self._nodes[message_id]
        parent = message.parent_id
        siblings = self._children[parent]
        at = siblings.index(message_id)
        active = self._active_child(parent)
        heir = self._active_child(message_id)
        moved = self._children.pop(message_id, [])
        self._active.pop(message_id, None)
        siblings[at : at + 1] = moved
        for child in moved:
            self._nodes[child].parent_id = parent
            self._unsaved.add(child)
        self._forget(message_id)
        if active != message_id:
            assert active is not None
            self._active[parent] = active  # moved children must not take over as "newest"
        else:
            self._active.pop(parent, None)
            successor = heir or (siblings[at - 1] if at > 0 else (siblings[at] if siblings else None))
            if successor is not None:
                self._set_active(successor)
        if not siblings:
            del self._children[parent]
        return message

    def delete_branch(self, message_id: str) -> list[Message]:
        """Delete a message and everything after it on every branch below it; returns what was deleted
        (the message first). A neighbouring version becomes active in its place."""
        message = self._nodes[message_id]
        parent = message.parent_id
        siblings = self._children[parent]
        at = siblings.index(message_id)
        was_active = self._active_child(parent) == message_id
        removed: list[Message] = []
        stack = [message_id]
        while stack:
            current = stack.pop()
            removed.append(self._nodes[current])
            stack.extend(reversed(self._children.pop(current, [])))
            self._active.pop(current, None)
            self._forget(current)
        del siblings[at]
        if was_active:
            self._active.pop(parent, None)
            if siblings:
                self._set_active(siblings[at - 1] if at > 0 else siblings[0])
        if not siblings:
            del self._children[parent]
        return removed

    # -- saving -------------------------------------------------------------------------------------

    def restore(
        self, messages: Iterable[Message], active_ids: Iterable[str] | None = None, *, saved: bool = False
    ) -> None:
        """Replace the tree with ``messages`` (creation order: a parent before its children).

        ``active_ids`` are the messages that are the active version among their siblings (None: the
        newest). A parent that is missing, or not earlier in the list, makes the message a root
        version: nothing is dropped and no cycle can form. Everything counts as unsaved unless
        ``saved`` (a store loading it).
        """
        nodes, children = self._nodes, self._children
        nodes.clear()
        children.clear()
        self._active.clear()
        self.mark_saved()
        for message in messages:  # the hot loop of opening a long chat: _attach inlined
            if message.id in nodes:
                raise ValueError(f"message {message.id} is in the conversation twice")
            if message.parent_id is not None and message.parent_id not in nodes:
                message.parent_id = _ROOT
            nodes[message.id] = message
            children.setdefault(message.parent_id, []).append(message.id)
        if not saved:
            self._unsaved.update(nodes)
        for message_id in active_ids or ():
            if message_id in nodes:
                self._active[nodes[message_id].parent_id] = message_id

    def pending_changes(self) -> PendingChanges:
        """Messages added or changed (content aside from streaming, pin, parent, active version) and ids
        deleted since the last :meth:`mark_saved`."""
        changed = tuple(m for m in self._nodes.values() if m.id in self._unsaved)
        return PendingChanges(changed, tuple(sorted(self._removed)))

    def mark_saved(self) -> None:
        """Everything is in the store now (called by the store after writing, or after loading)."""
        self._unsaved.clear()
        self._removed.clear()

    # -- tree bookkeeping ---------------------------------------------------------------------------

    def _attach(self, message: Message) -> None:
        if message.id in self._nodes:
            raise ValueError(f"message {message.id} is already in the conversation")
        self._nodes[message.id] = message
        self._children.setdefault(message.parent_id, []).append(message.id)
        self._unsaved.add(message.id)
        self._removed.discard(message.id)

    def _forget(self, message_id: str) -> None:
        del self._nodes[message_id]
        self._unsaved.discard(message_id)
        self._removed.add(message_id)

    def _active_child(self, parent: str | None) -> str | None:
        children = self._children.get(parent)
        if not children:
            return None
        chosen = self._active.get(parent)
        return chosen if chosen is not None and chosen in children else children[-1]

    def _set_active(self, message_id: str) -> None:
        parent = self._nodes[message_id].parent_id
        previous = self._active_child(parent)
        self._active[parent] = message_id
        if previous != message_id:
            # Both rows' "active" flags change in the store.
            self._unsaved.add(message_id)
            if previous is not None:
                self._unsaved.add(previous)
