"""Saved conversations: SQLite in WAL mode in the data dir.

WAL lets the GUI read the conversation list while a reply is being written, and a committed write
survives the process dying right after it. Writes are incremental: :meth:`ChatStore.sync` writes the
conversation's row and only the messages that changed since it was last saved (a turn, not the whole
conversation), and the chat session writes the streaming reply every few chunks
(:meth:`ChatStore.update_message`), so a crash mid-reply keeps what was streamed; such a reply is
found with ``complete = False`` on reopening.

Opening never fails: see :mod:`app.chat.storage_schema` (migration from schema 1, damaged files set
aside); :attr:`ChatStore.warning` says what happened in one sentence. Export and import live in
:mod:`app.chat.export` (re-exported here).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from app.chat.conversation import ChatMeta, Conversation, Message, ReplyStats
from app.chat.export import (
    EXPORT_FORMAT,
    EXPORT_VERSION,
    conversation_from_json,
    conversation_to_json,
    conversation_to_markdown,
    with_fresh_ids,
)
from app.chat.storage_schema import SCHEMA_VERSION, open_database
from app.chat.templates import Role
from app.errors import ChatStoreError, ConversationNotFoundError
from app.paths import app_paths

__all__ = [
    "DB_FILE",
    "EXPORT_FORMAT",
    "EXPORT_VERSION",
    "SCHEMA_VERSION",
    "ChatStore",
    "ConversationSummary",
    "conversation_from_json",
    "conversation_to_json",
    "conversation_to_markdown",
    "default_db_path",
]

DB_FILE: Final = "chats.sqlite3"

_UPSERT_MESSAGE: Final = """
INSERT INTO messages (id, conversation_id, position, role, content, pinned, complete, stop_reason,
    token_count, created_at, updated_at, parent_id, active, stats)
VALUES (?, ?, (SELECT COALESCE(MAX(position), -1) + 1 FROM messages WHERE conversation_id = ?),
    ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT(id) DO UPDATE SET role=excluded.role, content=excluded.content, pinned=excluded.pinned,
    complete=excluded.complete, stop_reason=excluded.stop_reason, token_count=excluded.token_count,
    updated_at=excluded.updated_at, parent_id=excluded.parent_id, active=excluded.active,
    stats=excluded.stats
"""
# The columns :func:`_messages` unpacks, in its order.
_SELECT_MESSAGES: Final = """
SELECT id, role, content, pinned, created_at, updated_at, complete, stop_reason, token_count, parent_id,
    stats, active
FROM messages WHERE conversation_id = ? ORDER BY position
"""
_UPSERT_CONVERSATION: Final = """
INSERT INTO conversations (id, title, system_prompt, created_at, updated_at, repo_id, branch, commit_sha,
    model_dir, backend, template, template_source, sampler)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT(id) DO UPDATE SET title=excluded.title, system_prompt=excluded.system_prompt,
    updated_at=excluded.updated_at, repo_id=excluded.repo_id, branch=excluded.branch,
    commit_sha=excluded.commit_sha, model_dir=excluded.model_dir, backend=excluded.backend,
    template=excluded.template, template_source=excluded.template_source, sampler=excluded.sampler
"""


def default_db_path() -> Path:
    """``<data dir>/chats.sqlite3``."""
    return app_paths().data_dir / DB_FILE


@dataclass(frozen=True)
class ConversationSummary:
    """One row of the conversation list."""

    id: str
    title: str
    updated_at: float
    message_count: int  # every saved message, all versions
    repo_id: str | None
    branch: str | None
    template: str | None
    created_at: float = 0.0
    model_dir: str | None = None
    backend: str | None = None

    @property
    def model(self) -> str | None:
        """The model to show in the list: the repo id, else the model folder's name."""
        if self.repo_id:
            return self.repo_id
        return Path(self.model_dir).name if self.model_dir else None


class ChatStore:
    """The conversations database. Safe to share between threads (one connection behind a lock)."""

    def __init__(self, path: Path | None = None) -> None:
        """Open (creating or migrating if needed) the database at ``path`` (default
        :func:`default_db_path`). A damaged file is set aside and a new one started; see ``warning``."""
        self.path = path or default_db_path()
        self._lock = threading.RLock()
        opened = open_database(self.path)
        self._db = opened.connection
        # One sentence for the error banner / stderr when the file was set aside or cannot be used.
        self.warning: str | None = opened.warning
        self.in_memory = opened.in_memory

    def close(self) -> None:
        """Close the connection (the WAL is checkpointed by SQLite)."""
        with self._lock:
            self._db.close()

    def __enter__(self) -> ChatStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self, doing: str) -> Iterator[sqlite3.Connection]:
        with self._lock, _sentence(doing):
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # -- writing -----------------------------------------------------------------------------------

    def sync(self, conversation: Conversation) -> None:
        """Write the conversation's row and what changed since it was last saved: new and changed
        messages, and the ones deleted. A conversation not in the database yet is written whole, with
        no messages too (so a new chat is listed at once)."""
        changes = conversation.pending_changes()
        with self._transaction("saving the chat") as db:
            known = db.execute("SELECT 1 FROM conversations WHERE id = ?", (conversation.id,)).fetchone()
            self._write_header(db, conversation)
            messages = changes.messages if known else tuple(conversation.all_messages())
            for message in messages:
                self._write_message(db, conversation, message)
            if changes.removed:
                placeholders = ",".join("?" * len(changes.removed))
                db.execute(
                    f"DELETE FROM messages WHERE conversation_id = ? AND id IN ({placeholders})",
                    (conversation.id, *changes.removed),
                )
        conversation.mark_saved()

    def save_message(self, conversation: Conversation, message: Message) -> None:
        """Write one message of ``conversation`` (new or changed, with its place in the tree)."""
        with self._transaction("saving the message") as db:
            self._write_header(db, conversation)
            self._write_message(db, conversation, message)

    def update_message(self, message: Message) -> None:
        """Write one message's content, status and stats: the cheap write made while a reply streams."""
        stats = json.dumps(message.stats.to_json()) if message.stats is not None else None
        with self._transaction("saving the reply") as db:
            db.execute(
                """UPDATE messages SET content=?, complete=?, stop_reason=?, token_count=?, pinned=?,
                       updated_at=?, stats=? WHERE id=?""",
                (
                    message.content,
                    int(message.complete),
                    message.stop_reason,
                    message.token_count,
                    int(message.pinned),
                    message.updated_at,
                    stats,
                    message.id,
                ),
            )
            db.execute(
                "UPDATE conversations SET updated_at=? "
                "WHERE id=(SELECT conversation_id FROM messages WHERE id=?)",
                (time.time(), message.id),
            )

    def _write_header(self, db: sqlite3.Connection, conversation: Conversation) -> None:
        meta = conversation.meta
        db.execute(
            _UPSERT_CONVERSATION,
            (
                conversation.id,
                conversation.title,
                conversation.system_prompt,
                conversation.created_at,
                time.time(),
                meta.repo_id,
                meta.branch,
                meta.commit,
                meta.model_dir,
                meta.backend,
                meta.template,
                meta.template_source,
                json.dumps(meta.sampler, sort_keys=True),
            ),
        )

    def _write_message(self, db: sqlite3.Connection, conversation: Conversation, message: Message) -> None:
        active = conversation.is_active(message.id)
        db.execute(
            _UPSERT_MESSAGE,
            (
                message.id,
                conversation.id,
                conversation.id,
                message.role.value,
                message.content,
                int(message.pinned),
                int(message.complete),
                message.stop_reason,
                message.token_count,
                message.created_at,
                message.updated_at,
                message.parent_id,
                int(active),
                json.dumps(message.stats.to_json()) if message.stats is not None else None,
            ),
        )
        if active:  # one active version per parent: its siblings' flags go down with one statement
            db.execute(
                "UPDATE messages SET active = (id = ?) WHERE conversation_id = ? AND parent_id IS ?",
                (message.id, conversation.id, message.parent_id),
            )

    def delete(self, conversation_id: str) -> None:
        """Delete a conversation and its messages (the user confirmed)."""
        with self._transaction("deleting the chat") as db:
            db.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,))

    def rename(self, conversation_id: str, title: str) -> None:
        """Change a conversation's title."""
        with self._transaction("renaming the chat") as db:
            db.execute("UPDATE conversations SET title=? WHERE id=?", (title, conversation_id))

    # -- reading -----------------------------------------------------------------------------------

    def list(self) -> list[ConversationSummary]:
        """Every conversation, most recently updated first (new, empty ones included)."""
        with self._lock, _sentence("listing the chats"):
            rows = self._db.execute(
                """SELECT c.id, c.title, c.created_at, c.updated_at, c.repo_id, c.branch, c.template,
                          c.model_dir, c.backend,
                          (SELECT COUNT(*) FROM messages m WHERE m.conversation_id = c.id) AS n
                   FROM conversations c ORDER BY c.updated_at DESC"""
            ).fetchall()
        return [
            ConversationSummary(
                id=r["id"],
                title=r["title"],
                updated_at=r["updated_at"],
                message_count=r["n"],
                repo_id=r["repo_id"],
                branch=r["branch"],
                template=r["template"],
                created_at=r["created_at"],
                model_dir=r["model_dir"],
                backend=r["backend"],
            )
            for r in rows
        ]

    def load(self, conversation_id: str) -> Conversation:
        """The saved conversation, every branch; ConversationNotFoundError when there is none."""
        with self._lock, _sentence("opening the chat"):
            row = self._db.execute("SELECT * FROM conversations WHERE id = ?", (conversation_id,)).fetchone()
            cursor = self._db.cursor()
            cursor.row_factory = None  # plain tuples: a third of the time of sqlite3.Row for 1,000 rows
            rows = cursor.execute(_SELECT_MESSAGES, (conversation_id,)).fetchall()
        if row is None:
            raise ConversationNotFoundError(
                f"There is no saved conversation {conversation_id}.", "It may have been deleted."
            )
        conversation = Conversation(
            id=row["id"],
            title=row["title"],
            system_prompt=row["system_prompt"],
            created_at=row["created_at"],
            meta=ChatMeta(
                repo_id=row["repo_id"],
                branch=row["branch"],
                commit=row["commit_sha"],
                model_dir=row["model_dir"],
                backend=row["backend"],
                template=row["template"],
                template_source=row["template_source"],
                sampler=_json_object(row["sampler"]),
            ),
        )
        messages, active = _messages(rows)
        conversation.restore(messages, active, saved=True)
        return conversation

    def import_json(self, data: Mapping[str, Any]) -> Conversation:
        """Save an exported conversation (see :func:`conversation_from_json`), every branch, and
        return it. Ids already in the database are replaced by fresh ones, so importing twice keeps
        both copies."""
        conversation = conversation_from_json(data)
        with self._lock, _sentence("importing the chat"):
            taken = self._db.execute(
                "SELECT 1 FROM conversations WHERE id = ?", (conversation.id,)
            ).fetchone()
            ids = [m.id for m in conversation.all_messages()]
            placeholders = ",".join("?" * len(ids))
            clash = bool(ids) and bool(
                self._db.execute(f"SELECT 1 FROM messages WHERE id IN ({placeholders})", ids).fetchone()
            )
        if taken or clash:
            conversation = with_fresh_ids(conversation)
        self.sync(conversation)
        return conversation


@contextmanager
def _sentence(doing: str) -> Iterator[None]:
    """SQLite errors as one sentence (disk full, locked by another program, damaged since opening)."""
    try:
        yield
    except sqlite3.Error as exc:
        raise ChatStoreError(
            f"Saved chats could not be read or written while {doing} ({exc}).",
            "Check free disk space; if it persists, restart QuantDesk (a damaged file is set aside).",
        ) from exc


def _messages(rows: Sequence[tuple[Any, ...]]) -> tuple[list[Message], list[str]]:
    """Messages from :data:`_SELECT_MESSAGES` rows, and the ids of the active versions."""
    roles = {role.value: role for role in Role}
    messages = [
        Message(
            role=roles[role],
            content=content,
            id=message_id,
            pinned=bool(pinned),
            created_at=created_at,
            updated_at=updated_at,
            complete=bool(complete),
            stop_reason=stop_reason,
            token_count=token_count,
            parent_id=parent_id,
            stats=ReplyStats.from_json(_json_value(stats)) if stats else None,
        )
        for (
            message_id,
            role,
            content,
            pinned,
            created_at,
            updated_at,
            complete,
            stop_reason,
            token_count,
            parent_id,
            stats,
            _active,
        ) in rows
    ]
    return messages, [row[0] for row in rows if row[-1]]


def _json_value(text: str | None) -> Any:
    try:
        return json.loads(text or "null")
    except ValueError:
        return None


def _json_object(text: str | None) -> dict[str, Any]:
    value = _json_value(text or "{}")
    return value if isinstance(value, dict) else {}
