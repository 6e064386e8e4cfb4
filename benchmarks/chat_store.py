"""Benchmark: saved chats stay fast when long. Issue 13: "loading from SQLite takes 4 ms" for a 1,000-message
conversation, and "saving a turn writes that turn, not the whole conversation again".

Measured on a temporary database (median of several runs each):
- open: ChatStore() on a file of 50 conversations x 1,000 messages (integrity check included);
- load: ChatStore.load of a 1,000-message conversation, flat and with 100 extra versions (branches);
- active path: Conversation.active_path() of that conversation;
- save a turn: ChatStore.sync after one send + reply on the 1,000-message conversation, against
  writing every message again (what schema-1 ``sync`` did each turn);
- migrate: opening a schema-1 file with 50 x 1,000 messages (backup + one-transaction migration).

Targets: load < 20 ms, a turn's save < 5 ms and independent of the conversation's length. Run:
``.venv/bin/python benchmarks/chat_store.py``. Prints the figures and PASS/FAIL.
"""

from __future__ import annotations

import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.chat.conversation import Conversation
from app.chat.storage import ChatStore
from app.chat.templates import Role

MESSAGES = 1000
CONVERSATIONS = 50
LOAD_TARGET_MS = 20.0
TURN_TARGET_MS = 5.0
RUNS = 7


def _median_ms(action: Callable[[], object], runs: int = RUNS) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def _conversation(messages: int, versions: int = 0) -> Conversation:
    conv = Conversation(title="long")
    for i in range(messages):
        role = Role.USER if i % 2 == 0 else Role.ASSISTANT
        conv.add(role, f"message {i}: " + "lorem ipsum dolor sit amet " * 8)
    path = conv.active_path()
    for i in range(versions):  # other versions of replies spread through the conversation
        reply = path[1 + 2 * (i * 7 % (messages // 2))]
        assert reply.parent_id is not None
        conv.add_child(reply.parent_id, Role.ASSISTANT, f"another version {i}")
        conv.select_version(reply.id)
    return conv


def _full_rewrite(store: ChatStore, conv: Conversation) -> None:
    """What schema-1 ``sync`` did every turn: every message written again."""
    for message in conv.all_messages():
        conv._unsaved.add(message.id)
    store.sync(conv)


def main() -> int:
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "chats.sqlite3"
        with ChatStore(path) as store:
            flat = _conversation(MESSAGES)
            branched = _conversation(MESSAGES, versions=100)
            store.sync(flat)
            store.sync(branched)
            for _ in range(CONVERSATIONS - 2):
                store.sync(_conversation(MESSAGES))
        open_ms = _median_ms(lambda: ChatStore(path).close(), runs=3)
        size_mb = path.stat().st_size / 1e6
        print(f"open ({CONVERSATIONS} x {MESSAGES} messages, {size_mb:.1f} MB): {open_ms:.1f} ms")

        with ChatStore(path) as store:
            load_flat = _median_ms(lambda: store.load(flat.id))
            load_branched = _median_ms(lambda: store.load(branched.id))
            loaded = store.load(branched.id)
            path_ms = _median_ms(loaded.active_path)
            print(f"load {MESSAGES} messages: {load_flat:.1f} ms; plus 100 versions: {load_branched:.1f} ms")
            print(f"active path of {len(loaded.active_path())} messages: {path_ms:.2f} ms")
            ok &= max(load_flat, load_branched) < LOAD_TARGET_MS

            turns: list[float] = []
            rewrites: list[float] = []
            conv = store.load(flat.id)
            for i in range(RUNS):
                conv.add(Role.USER, f"question {i}")
                conv.add(Role.ASSISTANT, f"answer {i}")
                started = time.perf_counter()
                store.sync(conv)
                turns.append((time.perf_counter() - started) * 1000)
            for _ in range(RUNS):  # after the turns: its WAL checkpoints must not be charged to them
                started = time.perf_counter()
                _full_rewrite(store, conv)
                rewrites.append((time.perf_counter() - started) * 1000)
            short = Conversation(title="short")
            store.sync(short)
            short_turns = []
            for i in range(RUNS):
                short.add(Role.USER, f"question {i}")
                short.add(Role.ASSISTANT, f"answer {i}")
                started = time.perf_counter()
                store.sync(short)
                short_turns.append((time.perf_counter() - started) * 1000)
            turn, rewrite, short_turn = (statistics.median(x) for x in (turns, rewrites, short_turns))
            print(
                f"save a turn: {turn:.2f} ms on {MESSAGES} messages, {short_turn:.2f} ms on a short chat; "
                f"writing every message again: {rewrite:.1f} ms ({rewrite / turn:.0f}x)"
            )
            ok &= turn < TURN_TARGET_MS

        v1 = Path(tmp) / "v1.sqlite3"
        _write_v1(v1)
        copies = [Path(tmp) / f"v1-{i}.sqlite3" for i in range(3)]
        times = []
        for copy in copies:
            shutil.copyfile(v1, copy)
            started = time.perf_counter()
            with ChatStore(copy) as store:
                assert store.warning is None
            times.append((time.perf_counter() - started) * 1000)
        migrate_ms = statistics.median(times)
        print(f"migrate a schema-1 file of {CONVERSATIONS} x {MESSAGES} messages: {migrate_ms:.0f} ms")
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


_V1_SCHEMA = """
CREATE TABLE conversations (id TEXT PRIMARY KEY, title TEXT NOT NULL DEFAULT '', system_prompt TEXT,
    created_at REAL NOT NULL, updated_at REAL NOT NULL, repo_id TEXT, branch TEXT, commit_sha TEXT,
    model_dir TEXT, backend TEXT, template TEXT, template_source TEXT, sampler TEXT NOT NULL DEFAULT '{}');
CREATE TABLE messages (id TEXT PRIMARY KEY,
    conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    position INTEGER NOT NULL, role TEXT NOT NULL, content TEXT NOT NULL, pinned INTEGER NOT NULL DEFAULT 0,
    complete INTEGER NOT NULL DEFAULT 1, stop_reason TEXT, token_count INTEGER, created_at REAL NOT NULL,
    updated_at REAL NOT NULL);
CREATE INDEX messages_by_conversation ON messages(conversation_id, position);
PRAGMA user_version=1;
"""


def _write_v1(path: Path) -> None:
    """A schema-1 file (the schema copied from the release before message versions)."""
    db = sqlite3.connect(path)
    db.executescript(_V1_SCHEMA)
    now = time.time()
    for c in range(CONVERSATIONS):
        db.execute(
            "INSERT INTO conversations (id, created_at, updated_at) VALUES (?, ?, ?)", (f"c{c}", now, now)
        )
        db.executemany(
            "INSERT INTO messages (id, conversation_id, position, role, content, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (f"c{c}m{i}", f"c{c}", i, "user" if i % 2 == 0 else "assistant", "text " * 40, now, now)
                for i in range(MESSAGES)
            ],
        )
    db.commit()
    db.execute("PRAGMA journal_mode=WAL")
    db.close()


if __name__ == "__main__":
    sys.exit(main())
