"""The chat page's parts as a user meets them: versions, the conversation list, settings without a model,
what a restart brings back, the context bar's legend, the model name in the header, long transcripts.

Most tests need no model (a saved conversation is shown read-only); the streaming one loads the tiny
Llama GPTQ on the page's chat thread, as the app does.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtWidgets import QStyle
from pytestqt.qtbot import QtBot

from app.chat.conversation import ChatMeta, Conversation, Message
from app.chat.profiles import ModelSettings, ProfileStore, local_profile_key
from app.chat.storage import ChatStore
from app.chat.templates import Role
from app.ui.chat import ChatPage
from app.ui.chat.conversation_list import UNSAVED_TITLE
from app.ui.error_center import ErrorCenter
from app.ui.settings import UiSettings
from tests.models.fixtures import TINY_MAIN
from tests.ui.conftest import WindowFactory

REPLY_MS = 120_000


@pytest.fixture
def make_page(qtbot: QtBot) -> Iterator[object]:
    pages: list[ChatPage] = []

    def make() -> ChatPage:
        page = ChatPage(UiSettings(), ErrorCenter())
        qtbot.addWidget(page)
        page.resize(1300, 800)
        page.show()
        pages.append(page)
        return page

    yield make
    for page in pages:
        page.shutdown()


def click(qtbot: QtBot, page: ChatPage, message_id: str, name: str) -> None:
    """Click a message's action where the transcript paints it."""
    rect = page.transcript.action_rect(message_id, name)
    assert not rect.isEmpty(), f"{name} is not offered on message {message_id}"
    qtbot.mouseClick(page.transcript.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())


def branched() -> tuple[Conversation, Message, Message, Message]:
    """A question with two replies: the first one continued by a second turn, the second one active."""
    conversation = Conversation(title="Foxes", meta=ChatMeta(repo_id="TheBloke/TinyLlama-GPTQ"))
    question = conversation.add(Role.USER, "Tell me about foxes")
    first = conversation.add(Role.ASSISTANT, "Foxes are small canids.")
    conversation.add(Role.USER, "And their tails?")
    conversation.add(Role.ASSISTANT, "Bushy.")
    second = conversation.add_child(question.id, Role.ASSISTANT, "A fox is a wild dog.")
    return conversation, question, first, second


def save(conversation: Conversation) -> None:
    with ChatStore() as store:
        store.sync(conversation)


def shown_ids(page: ChatPage) -> list[str]:
    return [r.id for r in page.transcript.rows()]


def test_version_arrows_switch_the_path_below_and_the_choice_survives_a_restart(
    qtbot: QtBot, make_page: object
) -> None:
    conversation, question, first, second = branched()
    save(conversation)
    page: ChatPage = make_page()  # type: ignore[operator]
    assert page.conversation_list.select(conversation.id)
    assert shown_ids(page) == [question.id, second.id]
    assert page.transcript.version_text(second.id) == "2/2"
    assert page.transcript.version_text(question.id) == ""  # a single version shows no switcher

    click(qtbot, page, second.id, "previous_version")
    rows = page.transcript.rows()
    assert [r.text for r in rows] == [
        "Tell me about foxes",
        "Foxes are small canids.",
        "And their tails?",
        "Bushy.",
    ]
    assert page.transcript.version_text(first.id) == "1/2"
    page.shutdown()

    again: ChatPage = make_page()  # type: ignore[operator]
    assert again.current_id == conversation.id  # the last conversation reopens
    assert shown_ids(again)[:2] == [question.id, first.id]  # with the version chosen
    click(qtbot, again, first.id, "next_version")
    assert shown_ids(again) == [question.id, second.id]


def test_deleting_a_message_asks_first_and_cancel_keeps_everything(
    qtbot: QtBot, make_page: object, tmp_path: Path
) -> None:
    conversation, question, first, second = branched()
    save(conversation)
    page: ChatPage = make_page()  # type: ignore[operator]
    page.conversation_list.select(conversation.id)
    asked: list[str] = []

    def cancel(_title: str, text: str, _choices: list[str]) -> int | None:
        asked.append(text)
        return None

    page.ask_choice = cancel
    click(qtbot, page, second.id, "delete")
    assert asked  # it asked
    with ChatStore() as store:
        assert len(store.load(conversation.id).all_messages()) == 5  # and nothing went

    exported = tmp_path / "all.md"
    page.ask_save_path = lambda *_a: exported
    assert page.export_conversation("md-all") == exported
    assert (
        "Foxes are small canids." in exported.read_text() and "A fox is a wild dog." in exported.read_text()
    )

    page.ask_choice = lambda *_a: 1  # "this message and all that follows"
    click(qtbot, page, second.id, "previous_version")
    click(qtbot, page, first.id, "delete")
    with ChatStore() as store:
        kept = store.load(conversation.id)
    assert [m.content for m in kept.all_messages()] == ["Tell me about foxes", "A fox is a wild dog."]
    assert shown_ids(page) == [question.id, second.id]


def test_list_entries_show_date_and_model_and_a_new_chat_is_listed_at_once(
    qtbot: QtBot, make_page: object
) -> None:
    conversation, *_ = branched()
    save(conversation)
    page: ChatPage = make_page()  # type: ignore[operator]
    listing = page.conversation_list
    assert listing.titles() == ["Foxes"]
    [detail] = listing.details()
    assert "TheBloke/TinyLlama-GPTQ" in detail and ":" in detail  # "14:05 · TheBloke/…" (saved today)
    page.new_chat()
    assert listing.titles()[0] == UNSAVED_TITLE and listing.view.currentRow() == 0
    assert ":" in listing.details()[0]


def test_settings_without_a_model_show_the_saved_profile_or_nothing(
    qtbot: QtBot, make_page: object, tiny_models: dict[str, Path]
) -> None:
    folder = tiny_models[TINY_MAIN]
    page: ChatPage = make_page()  # type: ignore[operator]
    panel = page.settings_panel
    assert [panel.shown_text(n) for n in ("temperature", "top_p", "max_new_tokens")] == ["", "", ""]
    assert all(panel.sources[n].text() == "" for n in panel.fields)  # nothing claims "this chat"
    page.add_model_folder(folder)
    qtbot.waitUntil(lambda: panel.sources["context_length"].text() == "model", timeout=30_000)
    # Nothing saved and nothing in the model's files: blank, not a spin box's minimum.
    for name in ("temperature", "top_p", "max_new_tokens"):
        assert panel.shown_text(name) == "", name
        assert panel.sources[name].text() == ""

    ProfileStore().update(*local_profile_key(folder), ModelSettings(temperature=0.7, max_new_tokens=64))
    page.add_model_folder(folder, "again")  # selecting it again reads the profile again
    qtbot.waitUntil(lambda: panel.shown_text("temperature") == "0.70", timeout=30_000)
    assert panel.sources["temperature"].text() == "profile"
    assert panel.shown_text("max_new_tokens") == "64" and panel.shown_text("top_p") == ""


def test_restart_restores_the_last_conversation_and_the_splitters(qtbot: QtBot, make_page: object) -> None:
    older, *_ = branched()
    newer = Conversation(title="Cats")
    newer.add(Role.USER, "Tell me about cats")
    save(older)
    save(newer)
    page: ChatPage = make_page()  # type: ignore[operator]
    page.conversation_list.select(older.id)
    page.splitter.setSizes([300, 650, 350])
    sizes = page.splitter.sizes()
    page.shutdown()

    again: ChatPage = make_page()  # type: ignore[operator]
    assert again.current_id == older.id
    assert again.transcript.rows()[0].text == "Tell me about foxes"
    assert again.splitter.sizes() == sizes


def test_the_context_bar_has_a_legend(make_page: object) -> None:
    page: ChatPage = make_page()  # type: ignore[operator]
    legend = {name: label.text() for name, label in page.budget.legend.items()}
    assert legend == {
        "system": "System prompt & template",
        "history": "History",
        "reserve": "Reserved for the reply",
    }
    assert all(label.isVisible() for label in page.budget.legend.values())


def test_a_long_model_name_is_shortened_in_the_header_never_clipped(make_page: object) -> None:
    page: ChatPage = make_page()  # type: ignore[operator]
    page.resize(900, 700)
    name = "TheBloke/Some-Very-Long-Model-Name-That-Goes-On-70B-Instruct-GPTQ:gptq-4bit-32g-actorder_True"
    label = page.model_bar.model_label
    label.set_full_text(name)
    page.repaint()
    right_edge = label.mapTo(page, QPoint(label.width(), 0)).x()
    middle = page.splitter.widget(1)
    assert right_edge <= middle.mapTo(page, QPoint(middle.width(), 0)).x()
    assert label.shown_text() != name and "…" in label.shown_text() and label.toolTip() == name
    page.resize(1900, 700)
    page.repaint()
    assert label.shown_text() == name


def test_a_1000_message_conversation_lays_out_only_what_is_on_screen(qtbot: QtBot, make_page: object) -> None:
    conversation = Conversation(title="Long")
    for i in range(500):
        conversation.add(Role.USER, f"Question {i}: tell me more about foxes")
        conversation.add(Role.ASSISTANT, f"Answer {i}: the fox jumps over the dog")
    save(conversation)
    page: ChatPage = make_page()  # type: ignore[operator]
    page.conversation_list.select(conversation.id)
    qtbot.waitUntil(lambda: bool(page.transcript.delegate.laid_out()), timeout=5000)  # painted
    rows = page.transcript.rows()
    assert len(rows) == 1000 and rows[-1].text == "Answer 499: the fox jumps over the dog"
    assert 0 < len(page.transcript.delegate.laid_out()) < 60  # a screenful, not a thousand
    bar = page.transcript.verticalScrollBar()
    assert bar.value() == bar.maximum()  # opened at the newest message


def test_the_chat_sidebar_item_has_a_chat_icon(make_window: WindowFactory) -> None:
    window = make_window()
    icon = window._items["Chat"].icon().pixmap(20, 20).toImage()
    info = (
        window.style().standardIcon(QStyle.StandardPixmap.SP_MessageBoxInformation).pixmap(20, 20).toImage()
    )
    assert not icon.isNull() and icon != info


def test_switching_conversations_while_a_reply_streams_stops_it_and_keeps_it(
    qtbot: QtBot, make_page: object, tiny_models: dict[str, Path]
) -> None:
    other = Conversation(title="Cats")
    other.add(Role.USER, "Tell me about cats")
    save(other)
    page: ChatPage = make_page()  # type: ignore[operator]
    page.add_model_folder(tiny_models[TINY_MAIN])
    with qtbot.waitSignal(page.load_finished, timeout=REPLY_MS):
        page.load_selected()
    page.new_chat()
    qtbot.waitUntil(lambda: page.current_id in page.conversation_ids(), timeout=REPLY_MS)  # listed at once
    assert page.conversation_list.titles()[0] == UNSAVED_TITLE
    for name, value in (("max_new_tokens", 400), ("temperature", 1.0)):
        page.settings_panel.fields[name].setValue(value)  # type: ignore[attr-defined]
    chunks: list[str] = []
    page.controller.worker.chunk.connect(chunks.append)
    page.send("The quick brown fox")
    qtbot.waitUntil(lambda: bool(chunks), timeout=REPLY_MS)
    streaming_id = page.current_id
    assert streaming_id in page.conversation_ids()  # listed while the reply streams
    assert page.conversation_list.view.isEnabled()
    with qtbot.waitSignal(page.reply_done, timeout=REPLY_MS):
        page.conversation_list.select(other.id)
    qtbot.waitUntil(
        lambda: [r.text for r in page.transcript.rows()] == ["Tell me about cats"], timeout=REPLY_MS
    )
    assert page.current_id == other.id and page.conversation_list.current_id() == other.id
    with ChatStore() as store:
        reply = store.load(streaming_id).messages[-1]  # type: ignore[arg-type]
    assert reply.role is Role.ASSISTANT and reply.content and reply.stop_reason == "cancelled"


def test_a_streamed_reply_is_shown_exactly_as_it_grows(make_page: object) -> None:
    """The streaming reply's layout grows with each chunk (not rebuilt): what is shown is the text so far,
    new lines included, and the finished reply is shown as Markdown."""
    from app.ui.chat.rows import MessageRow

    page: ChatPage = make_page()  # type: ignore[operator]
    transcript = page.transcript
    transcript.show_rows([MessageRow("u", "user", "Hi"), MessageRow("s", "assistant", "", streaming=True)])
    delegate, width = transcript.delegate, 400
    shown = ""
    for chunk in ["Once", " upon a time", "\n\nthere was", " a **fox**.", "\nThe end."]:
        transcript.model_.append_text(chunk)
        shown += chunk
        row = transcript.row("s")
        assert row is not None and row.text == shown
        assert delegate.document(row, width).toPlainText() == shown  # plain text while it streams
    done = MessageRow("s", "assistant", shown)
    transcript.show_rows([MessageRow("u", "user", "Hi"), done])
    # Markdown once complete: the bold markers are formatting now, a single new line joins the paragraph
    assert delegate.document(done, width).toPlainText() == "Once upon a time\nthere was a fox. The end."
