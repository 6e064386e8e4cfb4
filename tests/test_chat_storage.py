"""Saved conversations: SQLite WAL, crash mid-reply keeps what streamed, export/import round trip."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from app.chat.conversation import ChatMeta, Conversation
from app.chat.detection import detect_template
from app.chat.engine import ChatSession, ReplyEnd
from app.chat.storage import (
    ChatStore,
    conversation_from_json,
    conversation_to_json,
    conversation_to_markdown,
    default_db_path,
)
from app.chat.templates import Role
from app.errors import ChatImportError, ConversationNotFoundError
from tests.chat_fakes import ScriptedModel

ROOT = Path(__file__).resolve().parent.parent


def _meta() -> ChatMeta:
    return ChatMeta(
        repo_id="TheBloke/Llama-2-7B-Chat-GPTQ",
        branch="gptq-4bit-32g-actorder_True",
        commit="c" * 40,
        model_dir="/models/llama",
        backend="gptqmodel",
        template="Llama-2-chat",
        template_source="name rule",
        sampler={"temperature": 0.7, "top_p": 0.9, "seed": 7},
    )


def _conversation() -> Conversation:
    conv = Conversation(title="Capitals", system_prompt="Be brief.", meta=_meta())
    conv.add(Role.USER, "Capital of France?")
    reply = conv.add(Role.ASSISTANT, "Paris.")
    reply.token_count, reply.stop_reason = 3, "eos"
    conv.add(Role.USER, "And of Italy? 🇮🇹", pinned=True)
    conv.add(Role.ASSISTANT, "Ro", complete=False)
    return conv


def _same(a: Conversation, b: Conversation) -> None:
    assert (a.id, a.title, a.system_prompt, a.meta) == (b.id, b.title, b.system_prompt, b.meta)
    assert a.created_at == pytest.approx(b.created_at, abs=1)
    fields = [
        (m.id, m.role, m.content, m.pinned, m.complete, m.stop_reason, m.token_count) for m in a.messages
    ]
    assert fields == [
        (m.id, m.role, m.content, m.pinned, m.complete, m.stop_reason, m.token_count) for m in b.messages
    ]
    for x, y in zip(a.messages, b.messages, strict=True):
        assert x.created_at == pytest.approx(y.created_at, abs=1)


def test_database_lives_in_the_data_dir_and_uses_wal(isolated_home: Path) -> None:
    with ChatStore() as store:
        assert store.path == default_db_path() == isolated_home / "data" / "chats.sqlite3"
    mode = sqlite3.connect(default_db_path()).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_sync_and_load_round_trip_and_list() -> None:
    conv = _conversation()
    with ChatStore() as store:
        store.sync(conv)
        _same(store.load(conv.id), conv)
        [summary] = store.list()
        assert (summary.id, summary.title, summary.message_count) == (conv.id, "Capitals", 4)
        assert (summary.repo_id, summary.template) == ("TheBloke/Llama-2-7B-Chat-GPTQ", "Llama-2-chat")


def test_sync_saves_an_edit_as_a_new_version_and_keeps_the_old_branch() -> None:
    conv = _conversation()
    with ChatStore() as store:
        store.sync(conv)
        first = conv.messages[0]
        conv.edit(first.id, "Capital of Spain?")
        store.sync(conv)
        loaded = store.load(conv.id)
        assert [m.content for m in loaded.messages] == ["Capital of Spain?"]
        assert len(loaded.all_messages()) == 5 and store.list()[0].message_count == 5
        loaded.select_version(first.id)
        _same(loaded, conv_with_first_active(conv, first.id))


def conv_with_first_active(conv: Conversation, message_id: str) -> Conversation:
    conv.select_version(message_id)
    return conv


def test_delete_rename_and_missing() -> None:
    conv = _conversation()
    with ChatStore() as store:
        store.sync(conv)
        store.rename(conv.id, "Europe")
        assert store.load(conv.id).title == "Europe"
        store.delete(conv.id)
        assert store.list() == []
        with pytest.raises(ConversationNotFoundError):
            store.load(conv.id)


def test_a_reader_sees_the_partial_reply_while_it_streams(tmp_path: Path) -> None:
    path = tmp_path / "chats.sqlite3"
    store = ChatStore(path)
    model = ScriptedModel(replies=[[f"w{i} " for i in range(40)]])
    session = ChatSession(model, detect_template(chat_override="ChatML"), store=store, flush_every_chunks=4)
    stream = session.send("story")
    for _ in range(10):
        next(stream)
    # A second connection (another process after a crash would be the same) sees what was committed.
    with ChatStore(path) as reader:
        reply = reader.load(session.conversation.id).messages[-1]
        assert reply.content == "w0 w1 w2 w3 w4 w5 w6 w7 " and not reply.complete
    items = list(stream)
    assert isinstance(items[-1], ReplyEnd)
    with ChatStore(path) as reader:
        reply = reader.load(session.conversation.id).messages[-1]
        assert reply.complete and reply.content.endswith("w39") and reply.stop_reason == "eos"
    store.close()


CRASHING_CHAT = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from app.chat.detection import detect_template
    from app.chat.engine import ChatSession
    from app.chat.storage import ChatStore
    from tests.chat_fakes import ScriptedModel

    store = ChatStore(Path(sys.argv[1]))
    model = ScriptedModel(replies=[[f"w{i} " for i in range(100000)]], chunk_delay=0.001)
    chatml = detect_template(chat_override="ChatML")
    session = ChatSession(model, chatml, store=store, flush_every_chunks=5, flush_every_seconds=60)
    print(session.conversation.id, flush=True)
    for i, _chunk in enumerate(session.send("Tell me a very long story.")):
        if i == 60:
            print("streaming", flush=True)
    """
)


def test_a_crash_mid_reply_keeps_what_was_streamed(tmp_path: Path) -> None:
    path = tmp_path / "chats.sqlite3"
    child = subprocess.Popen(
        [sys.executable, "-c", CRASHING_CHAT, str(path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert child.stdout is not None
        conversation_id = child.stdout.readline().strip()
        assert child.stdout.readline().strip() == "streaming"
        time.sleep(0.05)
    finally:
        child.send_signal(signal.SIGKILL)  # no finally blocks, no atexit: a real crash
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    with ChatStore(path) as store:
        conv = store.load(conversation_id)
    user, reply = conv.messages
    assert user.content == "Tell me a very long story."
    assert not reply.complete  # shown as interrupted when reopened
    words = reply.content.split()
    assert len(words) >= 60 and words == [f"w{i}" for i in range(len(words))]


def test_export_json_import_round_trip() -> None:
    conv = _conversation()
    data = json.loads(json.dumps(conversation_to_json(conv)))
    assert data["model"] == {
        "repo_id": "TheBloke/Llama-2-7B-Chat-GPTQ",
        "branch": "gptq-4bit-32g-actorder_True",
        "commit": "c" * 40,
        "backend": "gptqmodel",
        "model_dir": "/models/llama",
    }
    assert data["template"] == {"name": "Llama-2-chat", "source": "name rule"}
    assert data["sampler"]["seed"] == 7
    assert data["messages"][1]["token_count"] == 3 and data["messages"][1]["created_at"].endswith("+00:00")
    _same(conversation_from_json(data), conv)
    with ChatStore() as store:
        imported = store.import_json(data)
        _same(store.load(imported.id), conv)
        again = store.import_json(data)  # importing twice keeps two copies with fresh ids
        assert again.id != conv.id and len(store.list()) == 2
        assert {m.id for m in again.messages}.isdisjoint({m.id for m in conv.messages})


def test_markdown_export_names_model_branch_template_and_sampler() -> None:
    md = conversation_to_markdown(_conversation())
    assert md.startswith("# Capitals\n")
    assert "TheBloke/Llama-2-7B-Chat-GPTQ (branch `gptq-4bit-32g-actorder_True`, commit `cccccccccccc`)" in md
    assert "**Template:** Llama-2-chat (name rule)" in md
    assert "**Sampler:** seed=7, temperature=0.7, top_p=0.9" in md
    assert "## System\n\nBe brief." in md
    assert "## User" in md and "And of Italy? 🇮🇹" in md and "pinned" in md
    assert "3 tokens" in md and "interrupted" in md


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"format": "other"}, "not a QuantDesk conversation"),
        ({"format": "quantdesk-conversation", "version": 99, "messages": []}, "version 99"),
        ({"format": "quantdesk-conversation", "version": 1}, "no message list"),
        (
            {"format": "quantdesk-conversation", "version": 1, "messages": [{"role": "bot", "content": "x"}]},
            "role",
        ),
        (
            {"format": "quantdesk-conversation", "version": 1, "messages": [{"role": "user"}]},
            "no text content",
        ),
        (
            {
                "format": "quantdesk-conversation",
                "version": 1,
                "messages": [{"role": "system", "content": "x"}],
            },
            "system prompt is separate",
        ),
        (
            {
                "format": "quantdesk-conversation",
                "version": 1,
                "messages": [{"role": "user", "content": "x", "created_at": "yesterday"}],
            },
            "not a timestamp",
        ),
    ],
)
def test_import_rejects_what_it_cannot_read(data: dict[str, object], message: str) -> None:
    with pytest.raises(ChatImportError, match=message):
        conversation_from_json(data)


def test_import_of_a_minimal_hand_written_file() -> None:
    conv = conversation_from_json(
        {
            "format": "quantdesk-conversation",
            "version": 1,
            "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
        }
    )
    assert [m.content for m in conv.messages] == ["hi", "hello"] and conv.meta == ChatMeta()


def _branched() -> Conversation:
    """Two root versions of the question; the second reply has two versions; the old branch is active."""
    conv = _conversation()
    first = conv.messages[0]
    conv.edit(first.id, "Capital of Spain?")
    conv.add(Role.ASSISTANT, "Madrid.")
    conv.select_version(first.id)
    italy = conv.messages[2]
    conv.add_child(italy.id, Role.ASSISTANT, "Rome.")
    return conv


def test_json_keeps_every_branch_and_import_restores_the_tree() -> None:
    conv = _branched()
    data = json.loads(json.dumps(conversation_to_json(conv)))
    assert data["version"] == 2 and len(data["messages"]) == 7
    assert data["active_path"] == [m.id for m in conv.messages]
    back = conversation_from_json(data)
    assert [m.content for m in back.messages] == ["Capital of France?", "Paris.", "And of Italy? 🇮🇹", "Rome."]
    _same(back, conv)
    assert [m.id for m in back.all_messages()] == [m.id for m in conv.all_messages()]
    back.select_version(back.versions(back.messages[0].id)[1].id)
    assert [m.content for m in back.messages] == ["Capital of Spain?", "Madrid."]
    with ChatStore() as store:
        imported = store.import_json(data)
        again = store.import_json(data)  # fresh ids: parents and active versions follow
        assert again.id != imported.id
        loaded = store.load(again.id)
        assert [m.content for m in loaded.messages] == [m.content for m in conv.messages]
        assert len(loaded.all_messages()) == 7
        assert {m.id for m in loaded.all_messages()}.isdisjoint({m.id for m in conv.all_messages()})


def test_a_version_1_json_export_imports_as_one_branch() -> None:
    conv = conversation_from_json(
        {
            "format": "quantdesk-conversation",
            "version": 1,
            "messages": [
                {"id": "a", "role": "user", "content": "hi"},
                {"id": "b", "role": "assistant", "content": "hello"},
                {"id": "c", "role": "user", "content": "bye"},
            ],
        }
    )
    assert [(m.id, m.parent_id) for m in conv.messages] == [("a", None), ("b", "a"), ("c", "b")]


def test_markdown_exports_the_active_path_by_default_and_every_branch_on_request() -> None:
    conv = _branched()
    active = conversation_to_markdown(conv)
    assert "Capital of France?" in active and "Rome." in active
    assert "Capital of Spain?" not in active and "Madrid." not in active
    assert "version 1 of 2" in active  # the question has another version
    everything = conversation_to_markdown(conv, all_branches=True)
    assert everything.startswith(active.rstrip("\n"))
    assert "## Branch 1: version 1 of 2 of message 4" in everything  # the interrupted "Ro"
    assert "## Branch 2: version 2 of 2 of message 1" in everything
    assert everything.count("Capital of Spain?") == 1 and everything.count("Madrid.") == 1
    # Each of the 7 messages appears once: 4 on the active path, 2 + 1 in branches.
    assert everything.count("## User") + everything.count("## Assistant") == 7
