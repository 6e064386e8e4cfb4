"""Saved conversations: SQLite in WAL mode in the data dir, plus Markdown/JSON export and JSON import.

WAL lets the GUI read the conversation list while a reply is being written, and a committed write
survives the process dying right after it. The chat session writes the streaming reply every few
chunks (:meth:`ChatStore.update_message`), so a crash mid-reply keeps what was streamed; such a reply
is found with ``complete = False`` on reopening.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from app.chat.conversation import ChatMeta, Conversation, Message, new_id
from app.chat.templates import Role
from app.errors import ChatImportError, ConversationNotFoundError
from app.paths import app_paths

DB_FILE: Final = "chats.sqlite3"
SCHEMA_VERSION: Final = 1
EXPORT_FORMAT: Final = "quantdesk-conversation"
EXPORT_VERSION: Final = 1

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS conversations (
    id TEXT PRIMARY KEY,
    title TEXT NOT NULL DEFAULT '',
    system_prompt TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    repo_id TEXT,
    branch TEXT,
    commit_sha TEXT,
    model_dir TEXT,
    backend TEXT,
    template TEXT,
    template_source TEXT,
    sampler TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS messages (
    id TEXT PRIMARY KEY,
    conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    role TEXT NOT NULL,
    content TEXT NOT NULL,
    pinned INTEGER NOT NULL DEFAULT 0,
    complete INTEGER NOT NULL DEFAULT 1,
    stop_reason TEXT,
    token_count INTEGER,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_by_conversation ON messages(conversation_id, position);
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
    message_count: int
    repo_id: str | None
    branch: str | None
    template: str | None


class ChatStore:
    """The conversations database. Safe to share between threads (one connection behind a lock)."""

    def __init__(self, path: Path | None = None) -> None:
        """Open (creating if needed) the database at ``path`` (default :func:`default_db_path`)."""
        self.path = path or default_db_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=10)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode: a committed transaction survives the process crashing (only an OS crash
        # or power cut may lose the last commits), at a fraction of FULL's fsyncs per streamed chunk.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        with self._transaction() as db:
            # executescript() would COMMIT on its own; run the statements inside this transaction.
            for statement in filter(str.strip, _SCHEMA.split(";")):
                db.execute(statement)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def close(self) -> None:
        """Close the connection (the WAL is checkpointed by SQLite)."""
        with self._lock:
            self._db.close()

    def __enter__(self) -> ChatStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # -- writing -----------------------------------------------------------------------------------

    def sync(self, conversation: Conversation) -> None:
        """Write the conversation as it is now: its row, every message, and delete messages it dropped."""
        meta = conversation.meta
        now = time.time()
        with self._transaction() as db:
            db.execute(
                """INSERT INTO conversations (id, title, system_prompt, created_at, updated_at, repo_id,
                       branch, commit_sha, model_dir, backend, template, template_source, sampler)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT(id) DO UPDATE SET title=excluded.title,
                       system_prompt=excluded.system_prompt, updated_at=excluded.updated_at,
                       repo_id=excluded.repo_id, branch=excluded.branch, commit_sha=excluded.commit_sha,
                       model_dir=excluded.model_dir, backend=excluded.backend, template=excluded.template,
                       template_source=excluded.template_source, sampler=excluded.sampler""",
                (
                    conversation.id,
                    conversation.title,
                    conversation.system_prompt,
                    conversation.created_at,
                    now,
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
            for position, message in enumerate(conversation.messages):
                db.execute(
                    """INSERT INTO messages (id, conversation_id, position, role, content, pinned, complete,
                           stop_reason, token_count, created_at, updated_at)
                       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                       ON CONFLICT(id) DO UPDATE SET position=excluded.position, role=excluded.role,
                           content=excluded.content, pinned=excluded.pinned, complete=excluded.complete,
                           stop_reason=excluded.stop_reason, token_count=excluded.token_count,
                           updated_at=excluded.updated_at""",
                    (
                        message.id,
                        conversation.id,
                        position,
                        message.role.value,
                        message.content,
                        int(message.pinned),
                        int(message.complete),
                        message.stop_reason,
                        message.token_count,
                        message.created_at,
                        message.updated_at,
                    ),
                )
            keep = [m.id for m in conversation.messages]
            placeholders = ",".join("?" * len(keep))
            db.execute(
                f"DELETE FROM messages WHERE conversation_id = ? AND id NOT IN ({placeholders})",
                (conversation.id, *keep),
            )

    def update_message(self, message: Message) -> None:
        """Write one message's content and status: the cheap write made while a reply streams."""
        with self._transaction() as db:
            db.execute(
                """UPDATE messages SET content=?, complete=?, stop_reason=?, token_count=?, pinned=?,
                       updated_at=? WHERE id=?""",
                (
                    message.content,
                    int(message.complete),
                    message.stop_reason,
                    message.token_count,
                    int(message.pinned),
                    message.updated_at,
                    message.id,
                ),
            )
            db.execute(
                "UPDATE conversations SET updated_at=? "
                "WHERE id=(SELECT conversation_id FROM messages WHERE id=?)",
                (time.time(), message.id),
            )

    def delete(self, conversation_id: str) -> None:
        """Delete a conversation and its messages."""
        with self._transaction() as db:
            db.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,))

    def rename(self, conversation_id: str, title: str) -> None:
        """Change a conversation's title."""
        with self._transaction() as db:
            db.execute("UPDATE conversations SET title=? WHERE id=?", (title, conversation_id))

    # -- reading -----------------------------------------------------------------------------------

    def list(self) -> list[ConversationSummary]:
        """Every conversation, most recently updated first."""
        with self._lock:
            rows = self._db.execute(
                """SELECT c.id, c.title, c.updated_at, c.repo_id, c.branch, c.template,
                          (SELECT COUNT(*) FROM messages m WHERE m.conversation_id = c.id) AS n
                   FROM conversations c ORDER BY c.updated_at DESC"""
            ).fetchall()
        return [
            ConversationSummary(
                r["id"], r["title"], r["updated_at"], r["n"], r["repo_id"], r["branch"], r["template"]
            )
            for r in rows
        ]

    def load(self, conversation_id: str) -> Conversation:
        """The saved conversation; ConversationNotFoundError when there is none."""
        with self._lock:
            row = self._db.execute("SELECT * FROM conversations WHERE id = ?", (conversation_id,)).fetchone()
            messages = self._db.execute(
                "SELECT * FROM messages WHERE conversation_id = ? ORDER BY position", (conversation_id,)
            ).fetchall()
        if row is None:
            raise ConversationNotFoundError(
                f"There is no saved conversation {conversation_id}.", "It may have been deleted."
            )
        return Conversation(
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
            messages=[
                Message(
                    role=Role(m["role"]),
                    content=m["content"],
                    id=m["id"],
                    pinned=bool(m["pinned"]),
                    created_at=m["created_at"],
                    updated_at=m["updated_at"],
                    complete=bool(m["complete"]),
                    stop_reason=m["stop_reason"],
                    token_count=m["token_count"],
                )
                for m in messages
            ],
        )

    def import_json(self, data: Mapping[str, Any]) -> Conversation:
        """Save an exported conversation (see :func:`conversation_from_json`) and return it.

        Ids already in the database are replaced by fresh ones, so importing twice keeps both copies.
        """
        conversation = conversation_from_json(data)
        with self._lock:
            taken = self._db.execute(
                "SELECT 1 FROM conversations WHERE id = ?", (conversation.id,)
            ).fetchone()
            ids = [m.id for m in conversation.messages]
            placeholders = ",".join("?" * len(ids))
            clash = bool(ids) and bool(
                self._db.execute(f"SELECT 1 FROM messages WHERE id IN ({placeholders})", ids).fetchone()
            )
        if taken or clash:
            conversation.id = new_id()
            for message in conversation.messages:
                message.id = new_id()
        self.sync(conversation)
        return conversation


def _json_object(text: str | None) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


# -- export / import ----------------------------------------------------------------------------------


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def _from_iso(text: Any, field_name: str) -> float:
    if isinstance(text, int | float):
        return float(text)
    if not isinstance(text, str):
        raise ChatImportError(f"'{field_name}' is not a timestamp.", "Import a file QuantDesk exported.")
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError as exc:
        raise ChatImportError(f"'{field_name}' is not a timestamp: {text!r}.", "") from exc


def conversation_to_json(conversation: Conversation) -> dict[str, Any]:
    """A JSON-ready export: the messages with timestamps and token counts, plus the model
    (repo, branch, commit), template and sampler settings."""
    return {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "id": conversation.id,
        "title": conversation.title,
        "created_at": _iso(conversation.created_at),
        "system_prompt": conversation.system_prompt,
        "model": {
            "repo_id": conversation.meta.repo_id,
            "branch": conversation.meta.branch,
            "commit": conversation.meta.commit,
            "backend": conversation.meta.backend,
            "model_dir": conversation.meta.model_dir,
        },
        "template": {"name": conversation.meta.template, "source": conversation.meta.template_source},
        "sampler": conversation.meta.sampler,
        "messages": [
            {
                "id": m.id,
                "role": m.role.value,
                "content": m.content,
                "pinned": m.pinned,
                "complete": m.complete,
                "stop_reason": m.stop_reason,
                "token_count": m.token_count,
                "created_at": _iso(m.created_at),
                "updated_at": _iso(m.updated_at),
            }
            for m in conversation.messages
        ],
    }


def _opt_str(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ChatImportError(f"'{key}' must be text.", "Import a file QuantDesk exported.")
    return value


def conversation_from_json(data: Mapping[str, Any]) -> Conversation:
    """Rebuild a conversation from :func:`conversation_to_json` output; ChatImportError on anything else."""
    if not isinstance(data, Mapping) or data.get("format") != EXPORT_FORMAT:
        raise ChatImportError(
            "This is not a QuantDesk conversation export.", "Import a .json file QuantDesk exported."
        )
    if not isinstance(data.get("version"), int) or data["version"] > EXPORT_VERSION:
        raise ChatImportError(
            f"The export is format version {data.get('version')!r}; "
            f"this QuantDesk reads up to {EXPORT_VERSION}.",
            "Update QuantDesk to import it.",
        )
    raw_messages = data.get("messages")
    if not isinstance(raw_messages, list):
        raise ChatImportError("The export has no message list.", "Import a file QuantDesk exported.")
    model = data.get("model") or {}
    template = data.get("template") or {}
    sampler = data.get("sampler") or {}
    if not isinstance(model, Mapping) or not isinstance(template, Mapping) or not isinstance(sampler, dict):
        raise ChatImportError("The export's model, template or sampler is malformed.", "")
    messages: list[Message] = []
    for i, raw in enumerate(raw_messages):
        if not isinstance(raw, Mapping):
            raise ChatImportError(f"Message {i + 1} is not an object.", "")
        try:
            role = Role(str(raw.get("role")))
        except ValueError as exc:
            raise ChatImportError(f"Message {i + 1} has an unknown role {raw.get('role')!r}.", "") from exc
        if role is Role.SYSTEM:
            raise ChatImportError(f"Message {i + 1} is a system message; the system prompt is separate.", "")
        content = raw.get("content")
        if not isinstance(content, str):
            raise ChatImportError(f"Message {i + 1} has no text content.", "")
        count = raw.get("token_count")
        created = _from_iso(raw.get("created_at", time.time()), "created_at")
        messages.append(
            Message(
                role=role,
                content=content,
                id=_opt_str(raw, "id") or new_id(),
                pinned=bool(raw.get("pinned", False)),
                created_at=created,
                updated_at=_from_iso(raw.get("updated_at", created), "updated_at"),
                complete=bool(raw.get("complete", True)),
                stop_reason=_opt_str(raw, "stop_reason"),
                token_count=count if isinstance(count, int) else None,
            )
        )
    return Conversation(
        id=_opt_str(data, "id") or new_id(),
        title=_opt_str(data, "title") or "",
        system_prompt=_opt_str(data, "system_prompt"),
        created_at=_from_iso(data.get("created_at", time.time()), "created_at"),
        messages=messages,
        meta=ChatMeta(
            repo_id=_opt_str(model, "repo_id"),
            branch=_opt_str(model, "branch"),
            commit=_opt_str(model, "commit"),
            backend=_opt_str(model, "backend"),
            model_dir=_opt_str(model, "model_dir"),
            template=_opt_str(template, "name"),
            template_source=_opt_str(template, "source"),
            sampler=dict(sampler),
        ),
    )


def conversation_to_markdown(conversation: Conversation) -> str:
    """A readable Markdown export with the model, branch, template and sampler at the top."""
    meta = conversation.meta
    model = meta.repo_id or meta.model_dir or "unknown model"
    if meta.branch:
        model += f" (branch `{meta.branch}`" + (f", commit `{meta.commit[:12]}`" if meta.commit else "") + ")"
    lines = [f"# {conversation.title or 'Conversation'}", ""]
    lines.append(f"- **Model:** {model}")
    if meta.backend:
        lines.append(f"- **Backend:** {meta.backend}")
    lines.append(
        f"- **Template:** {meta.template or 'unknown'}"
        + (f" ({meta.template_source})" if meta.template_source else "")
    )
    if meta.sampler:
        sampler = ", ".join(f"{k}={v}" for k, v in sorted(meta.sampler.items()))
        lines.append(f"- **Sampler:** {sampler}")
    lines.append(f"- **Started:** {_iso(conversation.created_at)}")
    if conversation.system_prompt:
        lines += ["", "## System", "", conversation.system_prompt]
    for message in conversation.messages:
        heading = {Role.USER: "User", Role.ASSISTANT: "Assistant", Role.SYSTEM: "System"}[message.role]
        notes = [_iso(message.created_at)]
        if message.token_count is not None:
            notes.append(f"{message.token_count} tokens")
        if message.pinned:
            notes.append("pinned")
        if not message.complete:
            notes.append("interrupted")
        elif message.stop_reason and message.stop_reason not in ("eos", "stop_string"):
            notes.append(f"stopped: {message.stop_reason}")
        lines += ["", f"## {heading}", "", f"*{', '.join(notes)}*", "", message.content]
    return "\n".join(lines) + "\n"
