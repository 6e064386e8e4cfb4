"""Opening chats.sqlite3: a schema-1 file from the previous release migrates with nothing lost; a damaged
file is set aside (renamed, never deleted) and a new one started, with one sentence to show."""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

import pytest

from app.chat import storage_schema
from app.chat.conversation import Conversation
from app.chat.storage import ChatStore, default_db_path
from app.chat.templates import Role

# Written by QuantDesk's schema-1 ChatStore (main at e7a3b73) with tests/fixtures/make_chats_v1.py.
V1_FIXTURE = Path(__file__).parent / "fixtures" / "chats_v1.sqlite3"
V1_COLUMNS = (
    "id, conversation_id, position, role, content, pinned, complete, stop_reason, token_count, "
    "created_at, updated_at"
)


def _v1_copy(tmp_path: Path) -> Path:
    path = tmp_path / "chats.sqlite3"
    shutil.copyfile(V1_FIXTURE, path)
    return path


def _rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    db = sqlite3.connect(path)
    try:
        return [tuple(r) for r in db.execute(sql).fetchall()]
    finally:
        db.close()


def test_the_fixture_is_a_schema_1_database() -> None:
    assert _rows(V1_FIXTURE, "PRAGMA user_version") == [(1,)]
    columns = {r[1] for r in _rows(V1_FIXTURE, "PRAGMA table_info(messages)")}
    assert "parent_id" not in columns and len(_rows(V1_FIXTURE, "SELECT * FROM messages")) == 8


def test_a_version_1_database_opens_with_every_conversation_intact(tmp_path: Path) -> None:
    path = _v1_copy(tmp_path)
    before_messages = _rows(path, f"SELECT {V1_COLUMNS} FROM messages ORDER BY id")
    before_conversations = _rows(path, "SELECT * FROM conversations ORDER BY id")
    with ChatStore(path) as store:
        assert store.warning is None
        summaries = {s.id: s for s in store.list()}
        capitals = store.load("c1" + "0" * 30)
        hello = store.load("c2" + "0" * 30)
        empty = store.load("c3" + "0" * 30)
    # Every row and column of the old file is still there, unchanged.
    assert _rows(path, f"SELECT {V1_COLUMNS} FROM messages ORDER BY id") == before_messages
    assert _rows(path, "SELECT * FROM conversations ORDER BY id") == before_conversations
    assert _rows(path, "PRAGMA user_version") == [(2,)]
    assert not list(tmp_path.glob("*backup*"))  # the backup goes once the migration committed
    # ...and reads back as the conversations the user had.
    assert len(summaries) == 3 and summaries["c1" + "0" * 30].message_count == 6
    assert summaries["c1" + "0" * 30].model == "TheBloke/Llama-2-7B-Chat-GPTQ"
    assert summaries["c2" + "0" * 30].model == "smollm2"
    assert [(m.role, m.content) for m in capitals.active_path()] == [
        (Role.USER, "Capital of France?"),
        (Role.ASSISTANT, "Paris."),
        (Role.USER, "And of Italy? 🇮🇹"),
        (Role.ASSISTANT, "Rome."),
        (Role.USER, "Write a haiku about Rome.\nTwo lines are fine."),
        (Role.ASSISTANT, "Seven hills at dusk"),
    ]
    path_ = capitals.active_path()
    assert [m.parent_id for m in path_] == [None, *(m.id for m in path_[:-1])]
    assert [m.pinned for m in path_] == [False, False, True, False, False, False]
    assert [m.stop_reason for m in path_[1::2]] == ["eos", "length", None]
    assert not path_[-1].complete and [m.token_count for m in path_[1::2]] == [6, 5, 19]
    assert path_[0].created_at == 1764000000.0 and capitals.created_at == 1764000000.0
    assert capitals.system_prompt == "Be brief." and capitals.meta.sampler["seed"] == 7
    assert capitals.meta.branch == "gptq-4bit-32g-actorder_True" and capitals.meta.commit == "c" * 40
    assert [m.content for m in hello.active_path()] == ["hi", "Hello! How can I help?"]
    assert hello.title == "hi" and hello.system_prompt is None and empty.all_messages() == []


def test_a_migrated_conversation_goes_on_with_versions(tmp_path: Path) -> None:
    path = _v1_copy(tmp_path)
    with ChatStore(path) as store:
        conv = store.load("c2" + "0" * 30)
        first = conv.active_path()[0]
        conv.edit(first.id, "hello")
        conv.add(Role.ASSISTANT, "Hi again.")
        store.sync(conv)
    with ChatStore(path) as store:  # a second open finds schema 2 and changes nothing
        again = store.load(conv.id)
    assert [m.content for m in again.active_path()] == ["hello", "Hi again."]
    again.select_version(first.id)
    assert [m.content for m in again.active_path()] == ["hi", "Hello! How can I help?"]


def test_a_migration_that_fails_changes_nothing_and_keeps_a_backup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _v1_copy(tmp_path)
    original = storage_schema._MIGRATIONS[1]
    monkeypatch.setitem(storage_schema._MIGRATIONS, 1, original + ";\nSELECT * FROM no_such_table")
    with ChatStore(path) as store:
        assert store.in_memory and store.warning is not None
        assert "could not be upgraded" in store.warning and "chats.sqlite3.v1-backup" in store.warning
        store.sync(Conversation(title="this session"))  # the window still works
    assert _rows(path, "PRAGMA user_version") == [(1,)]  # rolled back as one transaction
    assert "parent_id" not in {r[1] for r in _rows(path, "PRAGMA table_info(messages)")}
    backup = tmp_path / "chats.sqlite3.v1-backup"
    assert _rows(backup, f"SELECT {V1_COLUMNS} FROM messages ORDER BY id") == _rows(
        V1_FIXTURE, f"SELECT {V1_COLUMNS} FROM messages ORDER BY id"
    )
    monkeypatch.setitem(storage_schema._MIGRATIONS, 1, original)
    with ChatStore(path) as store:  # fixed: the next start migrates
        assert store.warning is None and len(store.list()) == 3


def _valid_database(path: Path) -> bytes:
    with ChatStore(path) as store:
        conv = Conversation()
        for i in range(200):
            conv.add(Role.USER if i % 2 == 0 else Role.ASSISTANT, f"message {i} " + "x" * 200)
        store.sync(conv)
    return path.read_bytes()


@pytest.mark.parametrize("damage", ["garbage", "text", "truncated", "zeroed page"])
def test_a_damaged_database_is_set_aside_and_a_new_one_started(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "chats.sqlite3"
    valid = _valid_database(path)
    content = {
        "garbage": os.urandom(9000),
        "text": b"not a database at all\n" * 200,
        "truncated": valid[: len(valid) // 2],
        "zeroed page": valid[:4096] + bytes(4096) + valid[8192:],
    }[damage]
    path.write_bytes(content)
    Path(f"{path}-wal").write_bytes(b"wal bytes")
    Path(f"{path}-shm").write_bytes(b"shm bytes")
    with ChatStore(path) as store:
        warning = store.warning
        assert warning is not None and not store.in_memory
        store.sync(Conversation(title="after the damage"))
        assert [s.title for s in store.list()] == ["after the damage"]
    [aside] = tmp_path.glob("chats.sqlite3.corrupt-*[0-9]")
    assert aside.read_bytes() == content  # kept byte for byte, never deleted
    assert Path(f"{aside}-wal").read_bytes() == b"wal bytes"
    assert Path(f"{aside}-shm").exists()  # moved along (an index SQLite rebuilds: its bytes may change)
    assert str(aside) in warning and warning.startswith("The chat history file was damaged")
    assert "\n" not in warning and warning.count(". ") == 0  # one sentence


def test_two_damaged_files_in_one_second_both_stay(tmp_path: Path) -> None:
    path = tmp_path / "chats.sqlite3"
    for content in (b"first garbage" * 100, b"second garbage" * 100):
        path.write_bytes(content)
        ChatStore(path).close()
    kept = sorted(p.read_bytes() for p in tmp_path.glob("chats.sqlite3.corrupt-*"))
    assert kept == sorted([b"first garbage" * 100, b"second garbage" * 100])


def test_a_database_from_a_newer_quantdesk_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "chats.sqlite3"
    _valid_database(path)
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version=3")
    db.close()
    before = path.read_bytes()
    with ChatStore(path) as store:
        assert store.in_memory and store.warning is not None and "newer QuantDesk" in store.warning
        store.sync(Conversation(title="kept in memory"))
    assert path.read_bytes() == before and not list(tmp_path.glob("*corrupt*"))


def test_an_unopenable_path_still_gives_a_working_store(tmp_path: Path) -> None:
    path = tmp_path / "chats.sqlite3"
    path.mkdir()  # a folder where the file should be: not damage, so nothing is renamed
    with ChatStore(path) as store:
        assert store.in_memory and store.warning is not None and "could not be opened" in store.warning
        store.sync(Conversation(title="x"))
        assert len(store.list()) == 1
    assert path.is_dir() and not list(tmp_path.glob("*corrupt*"))


def test_the_default_database_in_the_data_dir_is_set_aside_too(isolated_home: Path) -> None:
    path = default_db_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x00garbage" * 512)
    with ChatStore() as store:
        assert store.warning is not None and store.path == path
    assert len(list(path.parent.glob("chats.sqlite3.corrupt-*"))) == 1


def test_two_processes_opening_a_version_1_file_at_once_both_get_it_whole(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = _v1_copy(tmp_path)
    code = (
        "import sys; from pathlib import Path; from app.chat.storage import ChatStore\n"
        "s = ChatStore(Path(sys.argv[1])); print(s.warning, len(s.list()), "
        "len(s.load('c1' + '0' * 30).active_path()))"
    )
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(root)}
    children = [
        subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE, text=True, env=env)
        for _ in range(3)
    ]
    outputs = [child.communicate(timeout=60)[0].strip() for child in children]
    assert outputs == ["None 3 6"] * 3
    assert _rows(path, "PRAGMA user_version") == [(2,)] and not list(tmp_path.glob("*backup*"))
