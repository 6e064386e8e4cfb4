"""Versions through the session and the store: regenerate/edit/continue keep every word, stats survive a
restart, a crash on a second branch keeps what streamed, and saving a turn writes only that turn."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from app.backends.base import Sampling
from app.chat.conversation import Conversation
from app.chat.detection import detect_template
from app.chat.engine import ChatSession, ChatSettings, ReplyEnd
from app.chat.storage import ChatStore
from app.chat.templates import Role
from app.errors import ChatError
from tests.chat_fakes import ScriptedModel

ROOT = Path(__file__).resolve().parent.parent


def _run(chunks: object) -> tuple[str, ReplyEnd]:
    text, end = "", None
    for item in chunks:  # type: ignore[attr-defined]
        if isinstance(item, ReplyEnd):
            end = item
        else:
            text += item
    assert end is not None
    return text, end


def _session(store: ChatStore | None, replies: list[list[str]], **settings: object) -> ChatSession:
    model = ScriptedModel(replies=replies)
    return ChatSession(
        model,
        detect_template(chat_override="ChatML"),
        store=store,
        settings=ChatSettings(**settings),  # type: ignore[arg-type]
    )


def _texts(conv: Conversation) -> list[str]:
    return [m.content for m in conv.active_path()]


def test_regenerate_keeps_the_old_reply_in_the_database_and_the_choice_survives_reopening() -> None:
    with ChatStore() as store:
        session = _session(store, [["first"], ["second"], ["third"]])
        _run(session.send("q"))
        first = session.conversation.active_path()[-1]
        _run(session.regenerate())
        _run(session.regenerate())
        session.select_version(first.id)
        loaded = store.load(session.conversation.id)
    assert _texts(loaded) == ["q", "first"]
    assert [m.content for m in loaded.versions(first.id)] == ["first", "second", "third"]
    assert loaded.version_position(first.id) == (1, 3)


def test_regenerate_an_earlier_reply_by_id_branches_there() -> None:
    session = _session(None, [["a1"], ["a2"], ["a1 again"]])
    _run(session.send("u1"))
    _run(session.send("u2"))
    a1 = session.conversation.active_path()[1]
    _, end = _run(session.regenerate(a1.id))
    assert _texts(session.conversation) == ["u1", "a1 again"]
    assert end.message.parent_id == a1.parent_id
    session.select_version(a1.id)
    assert _texts(session.conversation) == ["u1", "a1", "u2", "a2"]
    with pytest.raises(ChatError, match="Only a reply"):
        session.regenerate(session.conversation.active_path()[0].id)


def test_the_model_sees_only_the_active_branch_and_the_budget_plans_on_it() -> None:
    session = _session(None, [["a1"], ["a2"], ["b1"], ["b2"]])
    _run(session.send("old question " + "x" * 40))
    _run(session.send("old follow-up " + "y" * 40))
    session.edit(session.conversation.active_path()[0].id, "new question")
    _run(session.reply())
    _, end = _run(session.send("new follow-up"))
    model = session.model
    assert isinstance(model, ScriptedModel)
    prompt = model.tokenizer.spell(model.prompts[-1])
    assert "new question" in prompt and "b1" in prompt and "new follow-up" in prompt
    assert "old" not in prompt and "a1" not in prompt  # the other branch is not in the prompt
    on_path = {m.id for m in session.conversation.active_path()}
    assert set(end.plan.kept) | set(end.plan.dropped) <= on_path
    assert session.preview_prompt().plan.kept == tuple(m.id for m in session.conversation.active_path())


def test_continue_extends_the_current_version_and_adds_up_its_stats() -> None:
    session = _session(None, [["Once ", "upon"], [" a time."]], sampling=Sampling(max_new_tokens=2))
    _, first = _run(session.send("story"))
    assert first.message.stats is not None and first.message.stats.tokens == 2
    _, end = _run(session.continue_reply())
    assert end.message is first.message and end.message.content == "Once upon a time."
    assert session.conversation.version_position(end.message.id) == (1, 1)
    assert end.message.stats is not None and end.message.stats.tokens == 3


def test_reply_stats_are_saved_and_shown_again_after_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "chats.sqlite3"
    with ChatStore(path) as store:
        session = _session(store, [["Hello", " there"]], sampling=Sampling(temperature=0.3, seed=11))
        _, end = _run(session.send("hi"))
    with ChatStore(path) as store:
        reply = store.load(session.conversation.id).active_path()[-1]
    stats = reply.stats
    assert stats is not None and stats == end.message.stats
    assert (stats.tokens, stats.backend) == (2, "fake")
    assert stats.sampler["temperature"] == 0.3 and stats.sampler["seed"] == 11
    assert stats.time_to_first_token_s >= 0 and stats.tokens_per_second >= 0
    assert stats.summary().startswith("2 tokens · ") and "first token" in stats.summary()


def test_edit_delete_and_switch_are_saved(tmp_path: Path) -> None:
    path = tmp_path / "chats.sqlite3"
    with ChatStore(path) as store:
        session = _session(store, [["a1"], ["a2"], ["a1b"]])
        _run(session.send("u1"))
        _run(session.send("u2"))
        u1 = session.conversation.active_path()[0]
        edited = session.edit(u1.id, "u1b")
        _run(session.reply())
        assert _texts(store.load(session.conversation.id)) == ["u1b", "a1b"]
        session.select_version(u1.id)
        assert _texts(store.load(session.conversation.id)) == ["u1", "a1", "u2", "a2"]
        u2 = session.conversation.active_path()[2]
        session.delete_message(u2.id)
        assert _texts(store.load(session.conversation.id)) == ["u1", "a1", "a2"]
        session.delete_branch(edited.id)
        loaded = store.load(session.conversation.id)
    assert _texts(loaded) == ["u1", "a1", "a2"] and len(loaded.all_messages()) == 3


def test_a_new_chat_is_listed_at_once_with_its_dates_and_model() -> None:
    with ChatStore() as store:
        session = _session(store, [["a"]])
        session.conversation.meta.model_dir = "/models/SmolLM2-135M-GPTQ"
        _run(session.send("first chat"))
        before = time.time()
        new = session.reset()  # New chat: no message yet
        summaries = store.list()
        assert session.reset() is new and len(store.list()) == 2  # still empty: no second empty chat
    assert summaries[0].id == new.id and summaries[0].message_count == 0
    assert summaries[0].model == "SmolLM2-135M-GPTQ"
    assert before - 1 <= summaries[0].created_at <= summaries[0].updated_at <= time.time() + 1


def _refuse_writes_to(path: Path, ids: list[str]) -> None:
    """A trigger (in the file, from another connection) that fails any write to these message rows."""
    db = sqlite3.connect(path)
    quoted = ",".join(f"'{i}'" for i in ids)
    for event in ("UPDATE", "DELETE"):
        db.execute(
            f"CREATE TRIGGER old_rows_{event.lower()} BEFORE {event} ON messages "
            f"WHEN old.id IN ({quoted}) BEGIN SELECT RAISE(ABORT, 'old row rewritten'); END"
        )
    db.commit()
    db.close()


def test_saving_a_turn_writes_that_turn_not_the_whole_conversation(tmp_path: Path) -> None:
    path = tmp_path / "chats.sqlite3"
    with ChatStore(path) as store:
        session = _session(store, [[f"reply {i}"] for i in range(500)] + [["new"], ["regenerated"]])
        for i in range(500):
            _run(session.send(f"message {i}"))
        old_ids = [m.id for m in session.conversation.all_messages()]
    _refuse_writes_to(path, old_ids[:-1])  # the last reply may change: it gets a sibling below
    with ChatStore(path) as store:
        conversation = store.load(session.conversation.id)
        session = _session(store, [["new"], ["regenerated"]])
        session.conversation = conversation
        _run(session.send("one more"))
        _run(session.regenerate())
        loaded = store.load(conversation.id)
    assert len(loaded.all_messages()) == 1003
    assert _texts(loaded)[-3:] == ["reply 499", "one more", "regenerated"]


CRASH_ON_A_SECOND_BRANCH = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from app.chat.detection import detect_template
    from app.chat.engine import ChatSession
    from app.chat.storage import ChatStore
    from tests.chat_fakes import ScriptedModel

    store = ChatStore(Path(sys.argv[1]))
    story = [f"w{i} " for i in range(100000)]
    model = ScriptedModel(replies=[["a1"], ["a2"], story], chunk_delay=0.001)
    chatml = detect_template(chat_override="ChatML")
    session = ChatSession(model, chatml, store=store, flush_every_chunks=5, flush_every_seconds=60)
    for text in ("u1", "u2"):
        for _chunk in session.send(text):
            pass
    if sys.argv[2] == "edit":
        session.edit(session.conversation.active_path()[0].id, "u1, told again")
        stream = session.reply()
    else:
        stream = session.regenerate()
    print(session.conversation.id, flush=True)
    for i, _chunk in enumerate(stream):
        if i == 60:
            print("streaming", flush=True)
    """
)


@pytest.mark.parametrize("how", ["edit", "regenerate"])
def test_a_crash_mid_reply_on_a_second_branch_keeps_both_branches_and_the_streamed_words(
    tmp_path: Path, how: str
) -> None:
    path = tmp_path / "chats.sqlite3"
    child = subprocess.Popen(
        [sys.executable, "-c", CRASH_ON_A_SECOND_BRANCH, str(path), how],
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
        child.send_signal(signal.SIGKILL)  # a real crash: no finally blocks run
        child.wait(timeout=30)
    with ChatStore(path) as store:
        conv = store.load(conversation_id)
    path_now = conv.active_path()
    reply = path_now[-1]
    assert not reply.complete and reply.role is Role.ASSISTANT
    words = reply.content.split()
    assert len(words) >= 60 and words == [f"w{i}" for i in range(len(words))]
    if how == "edit":
        assert [m.content for m in path_now[:-1]] == ["u1, told again"]
        conv.select_version(conv.versions(path_now[0].id)[0].id)
        assert _texts(conv) == ["u1", "a1", "u2", "a2"]
    else:
        assert [m.content for m in path_now[:-1]] == ["u1", "a1", "u2"]
        assert [m.content for m in conv.versions(reply.id)] == ["a2", reply.content]


def test_save_message_writes_one_new_version_in_its_place(tmp_path: Path) -> None:
    path = tmp_path / "chats.sqlite3"
    with ChatStore(path) as store:
        conv = Conversation()
        question = conv.add(Role.USER, "q")
        first = conv.add(Role.ASSISTANT, "first")
        store.sync(conv)
        second = conv.add_child(question.id, Role.ASSISTANT, "second")
        store.save_message(conv, second)
    with ChatStore(path) as store:
        loaded = store.load(conv.id)
    assert _texts(loaded) == ["q", "second"]
    assert [m.id for m in loaded.versions(first.id)] == [first.id, second.id]
