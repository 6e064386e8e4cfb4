"""The Chat page on real GPTQ models (the tiny Llama, SmolLM2-135M), offscreen.

Each test builds the page alone (no Hub needed) except the close-during-generation test, which closes
a whole main window. Models load on the page's chat thread exactly as in the app.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from app.chat.profiles import ModelSettings, ProfileStore, SettingSource
from app.chat.storage import ChatStore
from app.chat.templates import Role
from app.ui.chat import ChatPage
from app.ui.chat.rows import MessageRow
from app.ui.chat.worker_data import LoadedInfo, ReplyOutcome
from app.ui.error_center import ErrorCenter
from app.ui.main_window import MainWindow
from app.ui.settings import UiSettings
from tests.models.fixtures import TINY_MAIN
from tests.remote_fixtures import (
    Recorded,
    ScriptedServer,
    chat_chunk,
    models_answer,
    send_json,
    sse,
    start_sse,
)
from tests.ui.conftest import WindowFactory
from tests.ui.test_local_and_settings import MemoryKeyring

LOAD_MS = 120_000
REPLY_MS = 120_000


@pytest.fixture
def keyring_in_memory() -> Iterator[MemoryKeyring]:
    import keyring
    from keyring.backends.null import Keyring as NullKeyring

    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    yield backend
    keyring.set_keyring(NullKeyring())


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


def load(qtbot: QtBot, page: ChatPage, folder: Path, label: str | None = None) -> LoadedInfo:
    page.add_model_folder(folder, label)
    with qtbot.waitSignal(page.load_finished, timeout=LOAD_MS) as done:
        page.load_selected()
    assert done.args == [True], [r.message for r in page.errors.history]
    assert page.info is not None
    qtbot.waitUntil(lambda: page.state is not None and page.state.budget is not None, timeout=LOAD_MS)
    return page.info


def send(qtbot: QtBot, page: ChatPage, text: str) -> ReplyOutcome:
    with qtbot.waitSignal(page.reply_done, timeout=REPLY_MS) as done:
        page.input.setPlainText(text)
        qtbot.keyClick(page.input, Qt.Key.Key_Return)  # Enter sends
    outcome = done.args[0] if done.args else None
    assert isinstance(outcome, ReplyOutcome)
    return outcome


def shown_row(page: ChatPage, message_id: str) -> MessageRow:
    """What the transcript shows of a message."""
    row = page.transcript.row(message_id)
    assert row is not None, f"message {message_id} is not shown"
    return row


def click_action(qtbot: QtBot, page: ChatPage, message_id: str, name: str) -> None:
    """Click a message's action (Edit, Regenerate, ‹ …) where the transcript paints it."""
    rect = page.transcript.action_rect(message_id, name)
    assert not rect.isEmpty(), f"{name} is not offered on message {message_id}"
    qtbot.mouseClick(page.transcript.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())


def set_field(page: ChatPage, name: str, value: object) -> None:
    widget = page.settings_panel.fields[name]
    if hasattr(widget, "setValue"):
        widget.setValue(value)
    elif hasattr(widget, "setCurrentText"):
        widget.setCurrentText(str(value))


def test_load_shows_backend_and_reason_memory_and_input_rules(
    qtbot: QtBot, make_page: object, tiny_models: dict[str, Path]
) -> None:
    page: ChatPage = make_page()  # type: ignore[operator]
    assert not page.input.isEnabled() and "download one" in page.composer.reason_label.text()
    info = load(qtbot, page, tiny_models[TINY_MAIN])
    assert info.backend == "GPTQModel" and "CPU" in info.backend_reason
    assert (
        page.model_bar.backend_button.text().startswith("GPTQModel")
        and "CPU" in page.model_bar.backend_reason.text()
    )
    # The override menu: every backend listed, the ones that cannot run it greyed with their reason.
    actions = {a.data(): a for a in page.model_bar.backend_menu.actions() if a.data()}
    assert actions["gptqmodel"].isEnabled()
    assert not actions["exllamav2"].isEnabled() and "—" in actions["exllamav2"].text()
    assert (
        "measured" in page.model_bar.memory_label.text() and "estimated" in page.model_bar.memory_label.text()
    )
    measured = ProfileStore().load(info.profile_repo, info.profile_branch).profile.measured
    assert measured is not None and measured.bytes == info.memory_bytes > 0
    assert page.input.isEnabled() and not page.composer.reason_label.isVisible()
    assert page.template_bar.label.text().startswith("Template:")
    # Shift+Enter is a new line, not a send.
    qtbot.keyClicks(page.input, "a")
    qtbot.keyClick(page.input, Qt.Key.Key_Return, Qt.KeyboardModifier.ShiftModifier)
    assert page.input.toPlainText() == "a\n" and not page.streaming


def test_stop_regenerate_continue_edit_and_pin(
    qtbot: QtBot, make_page: object, tiny_models: dict[str, Path]
) -> None:
    page: ChatPage = make_page()  # type: ignore[operator]
    load(qtbot, page, tiny_models[TINY_MAIN])
    set_field(page, "max_new_tokens", 400)
    set_field(page, "temperature", 1.0)
    assert page.settings_panel.sources["max_new_tokens"].text() == "this chat"

    # Stop mid-reply keeps the partial text.
    chunks: list[str] = []
    page.controller.worker.chunk.connect(chunks.append)
    with qtbot.waitSignal(page.reply_done, timeout=REPLY_MS) as done:
        page.input.setPlainText("The quick brown fox")
        qtbot.keyClick(page.input, Qt.Key.Key_Return)
        qtbot.waitUntil(lambda: bool(chunks), timeout=REPLY_MS)
        assert page.composer.stop_button.isEnabled() and not page.composer.send_button.isEnabled()
        qtbot.keyClick(page.input, Qt.Key.Key_Escape)  # Esc stops
    outcome: ReplyOutcome = done.args[0]
    reply = outcome.state.conversation.messages[-1]
    assert reply.role is Role.ASSISTANT and reply.content and reply.stop_reason == "cancelled"
    assert outcome.stats is not None
    footer = shown_row(page, reply.id).footer
    assert "tokens/s" in footer and "first token" in footer
    assert "Stopped" in footer

    # Regenerate makes a new version of the last reply; the old one stays (version 1 of 2).
    set_field(page, "max_new_tokens", 6)
    with qtbot.waitSignal(page.reply_done, timeout=REPLY_MS) as done:
        click_action(qtbot, page, reply.id, "regenerate")
    conversation = done.args[0].state.conversation
    after = conversation.messages
    assert len(after) == 2 and after[-1].id != reply.id and after[0].content == "The quick brown fox"
    assert conversation.version_position(after[-1].id) == (2, 2)
    assert conversation.get(reply.id).content == reply.content
    assert page.transcript.version_text(after[-1].id) == "2/2"

    # Continue extends it.
    before = after[-1].content
    with qtbot.waitSignal(page.reply_done, timeout=REPLY_MS) as done:
        click_action(qtbot, page, after[-1].id, "continue")
    continued = done.args[0].state.conversation.messages
    assert len(continued) == 2 and continued[-1].content.startswith(before)

    # A second turn, then editing the first question answers the new version on a new branch; the
    # old question and both its turns stay as version 1.
    send(qtbot, page, "Once upon a time")
    assert len(page.state.conversation.messages) == 4  # type: ignore[union-attr]
    old_path = [m.id for m in page.state.conversation.messages]  # type: ignore[union-attr]
    first = page.state.conversation.messages[0]  # type: ignore[union-attr]
    page.ask_text = lambda *_a: "A new question"
    with qtbot.waitSignal(page.reply_done, timeout=REPLY_MS) as done:
        click_action(qtbot, page, first.id, "edit")
    conversation = done.args[0].state.conversation
    edited = conversation.messages
    assert [m.role for m in edited] == [Role.USER, Role.ASSISTANT]
    assert edited[0].id != first.id and edited[0].content == "A new question"
    assert conversation.version_position(edited[0].id) == (2, 2)
    assert [m.id for m in conversation.versions(first.id)] == [first.id, edited[0].id]
    assert {m.id for m in conversation.all_messages()} >= set(old_path)

    # Pin a turn.
    first = edited[0]
    # Wait for the pin itself: a state with the last reply's budget may still be on its way.
    click_action(qtbot, page, first.id, "pin")
    qtbot.waitUntil(
        lambda: page.state.conversation.messages[0].pinned,  # type: ignore[union-attr]
        timeout=REPLY_MS,
    )
    assert shown_row(page, first.id).pinned


def _long_conversation(turns: int) -> dict[str, object]:
    messages = []
    for i in range(turns):
        messages.append({"role": "user", "content": f"Question {i}: " + "tell me more about foxes " * 6})
        messages.append({"role": "assistant", "content": f"Answer {i}: " + "the fox jumps over the dog " * 6})
    return {"format": "quantdesk-conversation", "version": 1, "title": "Long chat", "messages": messages}


def test_stop_pressed_before_the_first_token_is_not_lost(
    qtbot: QtBot, make_page: object, tiny_models: dict[str, Path]
) -> None:
    page: ChatPage = make_page()  # type: ignore[operator]
    load(qtbot, page, tiny_models[TINY_MAIN])
    set_field(page, "max_new_tokens", 400)
    set_field(page, "temperature", 1.0)
    with qtbot.waitSignal(page.reply_done, timeout=REPLY_MS) as done:
        page.input.setPlainText("The quick brown fox")
        qtbot.keyClick(page.input, Qt.Key.Key_Return)
        page.controller.stop()  # at once: the request is still queued for the chat thread
    outcome: ReplyOutcome = done.args[0]
    reply = outcome.state.conversation.messages[-1]
    assert reply.role is Role.ASSISTANT and reply.stop_reason == "cancelled"
    assert outcome.stats is not None and outcome.stats.new_tokens <= 2


def test_budget_meter_marks_dropped_turns_and_pinning_keeps_one(
    qtbot: QtBot, make_page: object, tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    page: ChatPage = make_page()  # type: ignore[operator]
    path = tmp_path / "long.json"
    path.write_text(json.dumps(_long_conversation(20)))
    page.ask_open_path = lambda *_a: path
    conversation_id = page.import_conversation()
    assert conversation_id and page.conversation_ids() == [conversation_id]
    assert len(page.transcript.rows()) == 40  # shown read-only before a model is loaded
    ProfileStore().update(
        "local", _profile_branch(tiny_models[TINY_MAIN]), ModelSettings(context_length=256, max_new_tokens=16)
    )
    info = load(qtbot, page, tiny_models[TINY_MAIN])
    assert info.context_length == 256
    budget = page.state.budget  # type: ignore[union-attr]
    assert budget is not None and budget.dropped and budget.reserve == 16
    assert budget.used <= 256 and "/ 256 tokens" in page.budget.label.text()
    first = page.state.conversation.messages[0]  # type: ignore[union-attr]
    newest = page.state.conversation.messages[-1]  # type: ignore[union-attr]
    assert shown_row(page, first.id).dropped
    assert not shown_row(page, newest.id).dropped
    assert "out of context" in page.budget.describe()
    with qtbot.waitSignal(page.state_shown, timeout=REPLY_MS):
        page.set_pinned(first.id, True)
    assert not shown_row(page, first.id).dropped


def _profile_branch(folder: Path) -> str:
    from app.chat.profiles import local_profile_key

    return local_profile_key(folder)[1]


def test_saved_settings_apply_after_reload_and_reset(
    qtbot: QtBot, make_page: object, tiny_models: dict[str, Path]
) -> None:
    page: ChatPage = make_page()  # type: ignore[operator]
    info = load(qtbot, page, tiny_models[TINY_MAIN])
    assert info.context_length == 512  # the model's own
    assert page.settings_panel.sources["temperature"].text() in ("default", "model")
    set_field(page, "context_length", 300)
    set_field(page, "max_new_tokens", 7)
    assert page.settings_panel.reload_note.isVisible()
    page.settings_panel.save_button.click()
    assert page.settings_panel.sources["max_new_tokens"].text() == "profile"
    saved = ProfileStore().load(info.profile_repo, info.profile_branch).profile.settings
    assert saved.context_length == 300 and saved.max_new_tokens == 7
    with qtbot.waitSignal(page.load_finished, timeout=LOAD_MS):
        page.settings_panel.reload_button.click()
    assert page.info is not None and page.info.context_length == 300
    assert page.info.effective["max_new_tokens"].source is SettingSource.PROFILE
    outcome = send(qtbot, page, "The quick brown fox")
    assert outcome.stats is not None and outcome.stats.new_tokens <= 7
    page.settings_panel.reset_button.click()
    assert ProfileStore().load(info.profile_repo, info.profile_branch).profile.settings == ModelSettings()
    assert page.settings_panel.sources["max_new_tokens"].text() in ("default", "model")


def test_smollm2_two_turns_stream_and_preview_matches_the_engine(
    qtbot: QtBot, make_page: object, smollm2_dir: Path
) -> None:
    from app.chat.detection import detect_for_model
    from app.chat.model_files import read_model_files
    from app.chat.templates import ChatMessage
    from app.cli.chat import render_prompt

    ProfileStore().update(
        "local",
        _profile_branch(smollm2_dir),
        ModelSettings(context_length=1024, temperature=0.0, max_new_tokens=12),
    )
    page: ChatPage = make_page()  # type: ignore[operator]
    info = load(qtbot, page, smollm2_dir, "SmolLM2-135M-Instruct")
    assert info.context_length == 1024
    assert "model's own template" in page.template_bar.label.text()
    pieces: list[str] = []
    page.controller.worker.chunk.connect(pieces.append)
    first = send(qtbot, page, "What is the capital of France?")
    assert "Paris" in first.state.conversation.messages[-1].content
    # SmolLM2's Jinja template adds its own system prompt before the first message: the bar counts it
    # with the template's text (it said "system 0" and counted it as history).
    qtbot.waitUntil(lambda: page.state.budget is not None and page.state.budget.system > 10)  # type: ignore[union-attr]
    budget = page.state.budget  # type: ignore[union-attr]
    assert budget is not None and f"system prompt and template {budget.system}," in page.budget.describe()
    assert len(pieces) >= 2  # streamed, not delivered at once
    send(qtbot, page, "And of Italy?")
    messages = page.state.conversation.messages  # type: ignore[union-attr]
    assert [m.role for m in messages] == [Role.USER, Role.ASSISTANT] * 2
    shown = shown_row(page, messages[-1].id)
    assert shown.text == messages[-1].content and "tokens/s" in shown.footer

    page.input.setPlainText("One more")
    with qtbot.waitSignal(page.preview_shown, timeout=REPLY_MS) as previewed:
        page.template_bar.preview_button.click()
    assert page.preview_dialog is not None
    text = page.preview_dialog.text.toPlainText()
    assert text == previewed.args[0].text
    files = read_model_files(smollm2_dir)
    expected = render_prompt(
        [*(ChatMessage(m.role, m.content) for m in messages), ChatMessage(Role.USER, "One more")],
        detect_for_model(files),
        bos_token=files.bos_token,
        eos_token=files.eos_token,
    )
    assert text == expected
    page.preview_dialog.close()

    # A template override: name and source change, and the preview follows.
    with qtbot.waitSignal(page.state_shown, timeout=REPLY_MS):
        page.set_template_override("Alpaca")
    assert "Alpaca" in page.template_bar.label.text() and "this chat" in page.template_bar.label.text()
    with qtbot.waitSignal(page.preview_shown, timeout=REPLY_MS) as previewed:
        page.show_preview()
    assert "### Instruction:" in previewed.args[0].text


def test_corrupt_model_reports_and_the_page_stays_usable(
    qtbot: QtBot, make_page: object, tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    broken = tmp_path / "broken-model"
    shutil.copytree(tiny_models[TINY_MAIN], broken)
    weights = next(broken.glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:1000])
    page: ChatPage = make_page()  # type: ignore[operator]
    page.add_model_folder(broken)
    with qtbot.waitSignal(page.load_finished, timeout=LOAD_MS) as done:
        page.load_selected()
    assert done.args == [False]
    qtbot.waitUntil(lambda: bool(page.errors.history), timeout=5000)
    report = page.errors.history[-1]
    assert report.message and "Traceback" not in report.message
    assert not page.input.isEnabled() and page.model_bar.load_button.isEnabled()
    load(qtbot, page, tiny_models[TINY_MAIN])
    assert page.input.isEnabled()


def test_conversations_survive_a_restart_and_can_be_managed(
    qtbot: QtBot, make_page: object, tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    page: ChatPage = make_page()  # type: ignore[operator]
    load(qtbot, page, tiny_models[TINY_MAIN])
    set_field(page, "max_new_tokens", 4)
    send(qtbot, page, "The quick brown fox")
    qtbot.keyClick(page.input, Qt.Key.Key_N, Qt.KeyboardModifier.ControlModifier)  # new chat
    qtbot.waitUntil(
        lambda: not page.state.conversation.messages,  # type: ignore[union-attr]
        timeout=REPLY_MS,
    )
    send(qtbot, page, "Once upon a time")
    ids = page.conversation_ids()
    assert len(ids) == 2
    page.shutdown()

    again: ChatPage = make_page()  # type: ignore[operator]  # a restart: a fresh page and database handle
    assert sorted(again.conversation_ids()) == sorted(ids)
    listing = again.conversation_list
    assert set(listing.titles()) == {"The quick brown fox", "Once upon a time"}
    listing.search.setText("quick")
    assert len(listing.titles()) == 1
    listing.select_row(0)
    assert [r.role for r in again.transcript.rows()] == ["user", "assistant"]
    assert "tokens/s" in again.transcript.rows()[1].footer  # the reply's stats, stored with it
    again.ask_text = lambda *_a: "Foxes"
    again.rename_conversation()
    listing.search.setText("")
    assert "Foxes" in listing.titles()
    listing.view.setCurrentItem(listing.view.findItems("Foxes", Qt.MatchFlag.MatchExactly)[0])
    md = tmp_path / "chat.md"
    again.ask_save_path = lambda *_a: md
    assert again.export_conversation("md") == md and "The quick brown fox" in md.read_text()
    js = tmp_path / "chat.json"
    again.ask_save_path = lambda *_a: js
    assert again.export_conversation("json") == js
    again.ask_open_path = lambda *_a: js
    assert again.import_conversation() is not None
    assert len(listing.titles()) == 3
    again.confirm = lambda _t: True
    again.delete_conversation()
    assert len(listing.titles()) == 2


def test_closing_the_window_mid_reply_saves_the_partial_reply(
    qtbot: QtBot, make_window: WindowFactory, tiny_models: dict[str, Path]
) -> None:
    window: MainWindow = make_window()
    window.show_page("Chat")
    page = window.chat_page
    load(qtbot, page, tiny_models[TINY_MAIN])
    set_field(page, "max_new_tokens", 400)
    set_field(page, "temperature", 1.0)
    chunks: list[str] = []
    page.controller.worker.chunk.connect(chunks.append)
    page.send("The quick brown fox")
    qtbot.waitUntil(lambda: bool(chunks), timeout=REPLY_MS)
    window.close()
    assert not page.controller.chat_thread.isRunning()
    with ChatStore() as store:
        [summary] = store.list()
        saved = store.load(summary.id)
    reply = saved.messages[-1]
    assert reply.role is Role.ASSISTANT and reply.content and reply.complete
    assert reply.stop_reason == "cancelled"


def test_endpoints_in_the_picker_editor_test_connection_and_an_interrupted_reply(
    qtbot: QtBot,
    make_page: object,
    keyring_in_memory: MemoryKeyring,
    scripted_server: ScriptedServer,
) -> None:
    secret = "sk-test-123"

    def answer(record: Recorded, handler: BaseHTTPRequestHandler) -> None:
        if record.headers.get("Authorization") != f"Bearer {secret}":
            send_json(handler, 401, {"detail": "Invalid API key"})
        elif record.method == "GET":
            models_answer(handler, "m1")
        else:
            start_sse(handler)
            sse(handler, chat_chunk("Bonjour"))
            sse(handler, chat_chunk(" à"))  # then the connection drops: no finish, no [DONE]

    scripted_server.script = answer
    page: ChatPage = make_page()  # type: ignore[operator]
    dialog = page.edit_endpoint(None)
    dialog.name.setText("lab")
    dialog.base_url.setText(scripted_server.base_url)
    dialog.model.setText("m1")
    dialog.api_key.setText(secret)
    with qtbot.waitSignal(page.endpoint_tested, timeout=30_000) as tested:
        dialog.test_button.click()
    assert tested.args[1] is True and "m1" in dialog.status.text()
    dialog.accept()
    assert dialog.saved is not None
    assert keyring_in_memory.secrets == {("QuantDesk", "endpoint:lab"): secret}
    from app.remote.endpoints import EndpointStore

    assert secret not in EndpointStore().path.read_text()
    entry = page.selected_entry()
    assert entry is not None and entry.endpoint is not None and entry.endpoint.name == "lab"
    assert page.model_bar.load_button.text() == "Connect" and page.model_bar.test_action.isEnabled()
    with qtbot.waitSignal(page.endpoint_tested, timeout=30_000) as tested:
        page.test_selected_endpoint()
    assert tested.args[1] is True and "Connected" in page.model_bar.progress_label.text()

    with qtbot.waitSignal(page.load_finished, timeout=30_000) as done:
        page.load_selected()
    assert done.args == [True] and page.info is not None and page.info.remote
    assert "server" in page.model_bar.memory_label.text()
    outcome = send(qtbot, page, "Salut")
    assert outcome.error is not None
    reply = outcome.state.conversation.messages[-1]
    assert reply.content.startswith("Bonjour") and reply.stop_reason == "error"
    assert shown_row(page, reply.id).interrupted
    assert "Interrupted" in shown_row(page, reply.id).footer
    assert page.errors.history and secret not in page.errors.history[-1].message
