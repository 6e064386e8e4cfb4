"""Opening the conversations database: the schema, the migration from older schemas, and what to do with
a file that is damaged.

- A new file gets schema 2 (:data:`SCHEMA`).
- A schema-1 file (QuantDesk before message versions: a flat list of messages per conversation) is
  migrated on open, in one transaction, after a backup copy of it is written next to it; the backup is
  removed once the migration has committed, and kept (with a warning) if it failed.
- A damaged file ("file is not a database", garbage, truncated) is set aside, renamed with a
  timestamp (never deleted), together with its ``-wal`` and ``-shm``, and a fresh database is started.
- A file that cannot be opened at all, or that a newer QuantDesk wrote, is left alone and the chats of
  this session live in memory.

Each of the last three ends in one sentence in :attr:`OpenedDatabase.warning` for the GUI's error banner
and the CLI's stderr. Opening never raises.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

SCHEMA_VERSION: Final = 2

# Schema 2. ``position`` is the creation order within the conversation (a parent always comes before
# its children); ``parent_id`` the message a message follows (NULL: a root version); ``active`` whether
# it is the active version among its siblings; ``stats`` the reply's ReplyStats as JSON.
SCHEMA: Final = """
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
    updated_at REAL NOT NULL,
    parent_id TEXT,
    active INTEGER NOT NULL DEFAULT 1,
    stats TEXT
);
CREATE INDEX IF NOT EXISTS messages_by_conversation ON messages(conversation_id, position);
CREATE INDEX IF NOT EXISTS messages_by_parent ON messages(conversation_id, parent_id);
"""

# Schema 1 -> 2: each message follows the one before it (a flat conversation is a one-branch tree).
_MIGRATE_1_TO_2: Final = """
ALTER TABLE messages ADD COLUMN parent_id TEXT;
ALTER TABLE messages ADD COLUMN active INTEGER NOT NULL DEFAULT 1;
ALTER TABLE messages ADD COLUMN stats TEXT;
UPDATE messages SET parent_id = (
    SELECT p.id FROM messages AS p
    WHERE p.conversation_id = messages.conversation_id AND p.position < messages.position
    ORDER BY p.position DESC LIMIT 1
);
CREATE INDEX IF NOT EXISTS messages_by_parent ON messages(conversation_id, parent_id);
"""

_MIGRATIONS: Final = {1: _MIGRATE_1_TO_2}  # from version -> statements to the next version
_DAMAGED: Final = {sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT}
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OpenedDatabase:
    """A ready connection (schema 2), and what the user should be told about opening it, if anything."""

    connection: sqlite3.Connection
    warning: str | None = None
    in_memory: bool = False


class _DamagedError(sqlite3.DatabaseError):
    """The integrity check found damage SQLite had not reported yet."""


class _NewerSchemaError(Exception):
    def __init__(self, version: int) -> None:
        super().__init__(f"schema version {version}")
        self.version = version


class _MigrationError(Exception):
    def __init__(self, backup: Path, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.backup = backup


def open_database(path: Path) -> OpenedDatabase:
    """Open (create, migrate, or replace a damaged) database at ``path``; never raises."""
    try:
        return OpenedDatabase(_open(path))
    except sqlite3.DatabaseError as exc:
        if not _is_damaged(exc):
            return _in_memory(f"Chats cannot be saved this session: {path} could not be opened ({exc}).")
        try:
            aside = set_aside(path)
        except OSError as move_error:
            return _in_memory(
                f"Chats cannot be saved this session: {path} is damaged and could not be set aside "
                f"({move_error.strerror or move_error})."
            )
        reason = str(exc).split(":")[0].splitlines()[0]  # SQLite's words, without page-level detail
        warning = (
            f"The chat history file was damaged ({reason}); it was kept as {aside} and a new, empty "
            "one was started."
        )
        try:
            return OpenedDatabase(_open(path), warning)
        except (sqlite3.Error, _NewerSchemaError, _MigrationError) as again:
            return _in_memory(f"{warning} The new one could not be created either ({again}).")
    except _NewerSchemaError as exc:
        return _in_memory(
            f"{path.name} was written by a newer QuantDesk (schema {exc.version}); chats of this session "
            "are not saved. Update QuantDesk to keep them."
        )
    except _MigrationError as exc:
        return _in_memory(
            f"Your saved chats could not be upgraded ({exc}); nothing was changed and a copy is kept as "
            f"{exc.backup.name}. Chats of this session are not saved."
        )


def _is_damaged(exc: sqlite3.Error) -> bool:
    """Whether SQLite says the file is not a database or is corrupt (not: locked, read-only, I/O)."""
    if isinstance(exc, _DamagedError):
        return True
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(code, int) and code & 0xFF in _DAMAGED


def _connect(target: str | Path) -> sqlite3.Connection:
    db = sqlite3.connect(target, check_same_thread=False, isolation_level=None, timeout=10)
    db.row_factory = sqlite3.Row
    return db


def _check(path: Path) -> None:
    """Raise if an existing file is damaged. Read-only: a read-write connection that fails would, on
    closing, remove the -wal file, which may hold the last chats; a read-only one leaves it alone."""
    if not path.is_file() or path.stat().st_size == 0:
        return
    db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        check = db.execute("PRAGMA quick_check(1)").fetchone()[0]
    finally:
        db.close()
    if check != "ok":
        raise _DamagedError(f"database disk image is malformed: {check}")


def _open(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    _check(path)
    db = _connect(path)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode: a committed transaction survives the process crashing (only an OS crash
        # or power cut may lose the last commits), at a fraction of FULL's fsyncs per streamed chunk.
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA foreign_keys=ON")
        _upgrade(db, path)
    except BaseException:
        db.close()
        raise
    return db


def _version(db: sqlite3.Connection) -> int:
    version = int(db.execute("PRAGMA user_version").fetchone()[0])
    if version == 0 and db.execute("SELECT 1 FROM sqlite_master WHERE name='conversations'").fetchone():
        return 1  # tables without a version number: written before versions were recorded
    return version


def _upgrade(db: sqlite3.Connection, path: Path) -> None:
    version = _version(db)
    if version > SCHEMA_VERSION:
        raise _NewerSchemaError(version)
    if version == SCHEMA_VERSION:
        return
    backup: Path | None = None
    try:
        # The write lock first: a second process opening the file now waits here, then finds it
        # upgraded (and never writes the backup file at the same time as this one).
        db.execute("BEGIN IMMEDIATE")
        try:
            version = _version(db)
            if version > SCHEMA_VERSION:
                raise _NewerSchemaError(version)
            if version == 0:
                _run(db, SCHEMA)
            elif version < SCHEMA_VERSION:
                backup = _backup(path, version)
                while version < SCHEMA_VERSION:
                    _run(db, _MIGRATIONS[version])
                    version += 1
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
    except sqlite3.Error as exc:
        if backup is not None and not _is_damaged(exc):
            raise _MigrationError(backup, exc) from exc
        raise
    if backup is not None:
        backup.unlink(missing_ok=True)


def _backup(path: Path, version: int) -> Path:
    """A consistent copy of the file as it is (WAL included), before the migration changes it."""
    backup = path.with_name(f"{path.name}.v{version}-backup")
    source = _connect(path)  # its own read transaction: this process's connection holds the write lock
    target = _connect(backup)
    try:
        source.backup(target)
    finally:
        target.close()
        source.close()
    return backup


def _run(db: sqlite3.Connection, script: str) -> None:
    # executescript() would COMMIT on its own; run the statements inside the caller's transaction.
    for statement in filter(str.strip, script.split(";")):
        db.execute(statement)


def _in_memory(warning: str) -> OpenedDatabase:
    _log.warning("%s", warning)
    db = _connect(":memory:")
    db.execute("PRAGMA foreign_keys=ON")
    _run(db, SCHEMA)
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
    return OpenedDatabase(db, warning, in_memory=True)


def set_aside(path: Path) -> Path:
    """Rename a damaged database (and its -wal/-shm) to ``<name>.corrupt-<timestamp>``; returns the new
    path of the main file. Nothing is deleted."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while any(Path(f"{aside}{s}").exists() for s in ("", "-wal", "-shm")):
        n += 1
        aside = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
    for suffix in ("-wal", "-shm", ""):  # the main file last: a half-moved set still names it
        source = Path(f"{path}{suffix}")
        if source.exists():
            source.rename(Path(f"{aside}{suffix}"))
    return aside
