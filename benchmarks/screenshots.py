"""Render every page of the window with real data from the local Hub emulator into docs/screenshots/.

Run: ``make screenshots`` (offscreen; set QT_QPA_PLATFORM=xcb under Xvfb for a real window system).
Each picture is the main window at 1360x860: the Models page on this machine, planned GPUs, the first
start, an error, dark mode; the Downloads page mid-download; the Local models page; Settings; the Chat
page mid-conversation with SmolLM2-135M GPTQ (the test model, built and cached by tests/models/build.py);
the search results for "llama 70b gptq" with their fit badges, and the quantized versions of a base model.
``--chat`` renders only the chat picture, ``--chat-versions`` only the one of a message with versions
(no model needed), ``--search`` only the search pictures (and the first start).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.gui_env import emulated_hub, pump, wait_until  # noqa: E402

if TYPE_CHECKING:
    from app.ui.main_window import MainWindow

OUT = ROOT / "docs" / "screenshots"
SIZE = (1360, 860)
TINY = "TheBloke/TinyLlama-GPTQ"


def chat_shot(window: MainWindow, shot: Callable[[MainWindow, str], None]) -> None:
    """The Chat page with SmolLM2: a question edited into a second version (``‹ 2/2 ›``) and answered,
    then the next reply caught while it streams."""
    from app.chat.profiles import ModelSettings, ProfileStore, local_profile_key
    from tests.models.build import ensure_built
    from tests.models.fixtures import SMOLLM2_BRANCH

    folder = ensure_built("smollm2") / SMOLLM2_BRANCH
    ProfileStore().update(
        "local",
        local_profile_key(folder)[1],
        ModelSettings(context_length=2048, temperature=0.0, max_new_tokens=160),
    )
    window.show_page("Chat")
    page = window.chat_page
    page.new_chat()  # not the conversation of the versions picture
    page.add_model_folder(folder, "SmolLM2-135M-Instruct (GPTQ 4-bit, 128g)")
    loaded: dict[str, object] = {}
    page.load_finished.connect(lambda ok: loaded.__setitem__("ok", ok))
    page.load_selected()
    wait_until(lambda: "ok" in loaded, 300)
    wait_until(lambda: page.state is not None and page.state.budget is not None)
    replies: list[object] = []
    page.reply_done.connect(replies.append)
    page.send("What is the capital of France?")
    wait_until(lambda: len(replies) == 1, 300)
    # Edit the question: a second version (‹ 2/2 ›), answered again; the first one stays a branch.
    assert page.state is not None
    question = page.state.conversation.messages[0]
    page.edit_message(question.id, "What is the capital of Italy?")
    wait_until(lambda: len(replies) == 2, 300)
    page.send("Write a short story about a cat who lives in Rome.")

    def streamed_enough() -> bool:
        last = page.transcript.last_row()
        return len(replies) == 3 or (last is not None and last.streaming and len(last.text) > 240)

    wait_until(streamed_enough, 300)
    page.input.setPlainText("Give the cat a name")
    shot(window, "chat")
    page.stop()
    wait_until(lambda: len(replies) == 3, 120)


def versions_shot(window: MainWindow, shot: Callable[[MainWindow, str], None]) -> None:
    """A saved conversation whose question was edited: ``‹ 1/2 ›`` on it, the first branch shown with its
    follow-up turn, the stats stored under each reply (no model loaded: read-only, versions switchable)."""
    from app.chat.conversation import ChatMeta, Conversation
    from app.chat.message import ReplyStats
    from app.chat.storage import ChatStore
    from app.chat.templates import Role

    sampler = {"temperature": 0.7, "top_p": 0.9, "top_k": 40}
    conversation = Conversation(
        title="Foxes", meta=ChatMeta(repo_id="TheBloke/Llama-2-7B-Chat-GPTQ", branch="main")
    )
    question = conversation.add(Role.USER, "What do red foxes eat?")
    answer = conversation.add(
        Role.ASSISTANT,
        "Red foxes are **omnivores**. They mostly eat:\n\n- small mammals (voles, mice, rabbits)\n"
        "- birds and eggs\n- fruit and berries in late summer\n\nNear towns they also scavenge.",
    )
    answer.stats = ReplyStats(48, 21.4, 0.31, "GPTQModel", sampler)
    conversation.add(Role.USER, "And in winter?")
    winter = conversation.add(
        Role.ASSISTANT, "In winter they hunt rodents under the snow, listening for them and pouncing."
    )
    winter.stats = ReplyStats(19, 22.0, 0.28, "GPTQModel", sampler)
    edited = conversation.edit(question.id, "What do arctic foxes eat?")
    other = conversation.add(Role.ASSISTANT, "Lemmings, mostly, and what polar bears leave behind.")
    other.stats = ReplyStats(12, 20.9, 0.30, "GPTQModel", sampler)
    conversation.select_version(question.id)  # the first version, with its follow-up turn
    assert edited.id != question.id
    with ChatStore() as store:
        store.sync(conversation)
    window.show_page("Chat")
    page = window.chat_page
    page.conversation_side.refresh()
    page.conversation_list.select(conversation.id)
    shot(window, "chat-versions")


def search_shots(window: MainWindow, shot: Callable[[MainWindow, str], None]) -> None:
    """The Models page's search: results with fit badges, then the quantized versions of a base model."""
    page = window.models_page
    panel = page.search_panel
    line = page.repo_bar.box.lineEdit()
    assert line is not None
    line.setText("llama 70b gptq")
    page.search("llama 70b gptq")
    wait_until(lambda: not panel.is_searching and panel.model.rowCount() > 0)
    wait_until(
        lambda: (
            panel.fits_in_flight == 0
            and all(panel.model.fit_of(h.repo_id) is not None for h in panel.model.hits[:8] if h.is_gptq)
        ),
        60,
    )
    panel.table.selectRow(0)
    shot(window, "search-results")
    panel.gptq_switch.setChecked(False)
    wait_until(lambda: not panel.is_searching)
    panel.show_quantized_versions("meta-llama/Llama-2-70b-hf")
    wait_until(lambda: not panel.is_searching and panel.model.rowCount() > 0)
    wait_until(lambda: panel.fits_in_flight == 0, 60)
    shot(window, "search-quantized-versions")
    panel.gptq_switch.setChecked(True)
    wait_until(lambda: not panel.is_searching)


def main() -> int:
    """Write the PNGs; prints their paths."""
    OUT.mkdir(parents=True, exist_ok=True)
    if "--chat-versions" in sys.argv[1:]:
        return chat_only(versions_shot)
    if "--chat" in sys.argv[1:]:
        return chat_only()
    if "--search" in sys.argv[1:]:
        return search_only()
    with emulated_hub() as (hub, _home):
        import shiboken6

        from app.ui.app import create_application, create_window
        from app.ui.downloads_controller import JobState
        from app.ui.downloads_page import DownloadCard
        from app.ui.error_center import uninstall_exception_hooks
        from app.ui.theme import apply_system_theme
        from tests.hub_emulator import Faults

        app = create_application()
        apply_system_theme(app, force_dark=False)
        written: list[Path] = []

        def shot(window: MainWindow, name: str) -> None:
            pump(0.3)
            path = OUT / f"{name}.png"
            window.grab().save(str(path))
            written.append(path)

        def new_window() -> MainWindow:
            window = create_window()
            uninstall_exception_hooks()  # a failing script should show its traceback
            window.resize(*SIZE)
            window.show()
            window.start_background()
            wait_until(lambda: window.hardware is not None)
            return window

        window = new_window()
        shot(window, "models-first-start")
        search_shots(window, shot)

        page = window.models_page
        page.open_repo("TheBloke/Gated-GPTQ")
        wait_until(lambda: not page.is_loading)
        shot(window, "error-gated-repo")
        window.banner.dismiss()

        page.open_repo(TINY)
        wait_until(lambda: not page.is_loading)
        page.select_branch("gptq-4bit-128g-actorder_False")  # the one whose card disagrees with its files
        shot(window, "models")

        page.planning.context_box.setValue(262_144)
        page.planning.plan_box.setText("0.7, 0.6")
        page.planning.plan_box.editingFinished.emit()
        page.select_branch("main")
        shot(window, "models-planned-gpus")
        page.planning.plan_box.setText("")
        page.planning.plan_box.editingFinished.emit()
        page.planning.context_box.setValue(4096)

        # Downloads: one complete, one failed, one paused, one running (throttled, files shown).
        window.download(TINY, "gptq-4bit-32g-actorder_True")
        wait_until(
            lambda: window.controller.jobs[f"{TINY}:gptq-4bit-32g-actorder_True"].state is JobState.DONE
        )
        hub.faults = Faults(fail_first=1000, fail_status=503)
        window.download(TINY, "gptq-3bit-128g-actorder_True")
        wait_until(
            lambda: window.controller.jobs[f"{TINY}:gptq-3bit-128g-actorder_True"].state is JobState.FAILED
        )
        hub.faults = Faults(throttle_bps=30_000, server="cdn")
        window.download(TINY, "gptq-8bit-32g-actorder_True")
        paused = window.controller.jobs[f"{TINY}:gptq-8bit-32g-actorder_True"]
        wait_until(lambda: paused.progress is not None and paused.progress.fraction > 0.2)
        window.controller.pause(paused.key)
        wait_until(lambda: paused.state is JobState.PAUSED)
        window.download(TINY, "main")
        running = window.controller.jobs[f"{TINY}:main"]
        window.show_page("Downloads")
        card = window.downloads_page.cards[running.key]
        assert isinstance(card, DownloadCard)
        card.files_toggle.setChecked(True)
        wait_until(lambda: running.progress is not None and running.progress.fraction > 0.45, 60)
        time.sleep(0.3)  # let the speed meter settle on a steady figure
        shot(window, "downloads")
        window.banner.dismiss()
        hub.faults = Faults()
        window.controller.resume(paused.key)  # finishes while we look elsewhere; main keeps running

        window.show_page("Local models")
        local = window.local_page
        wait_until(lambda: len(local.model.models) >= 3)
        local.check_for_updates()
        wait_until(
            lambda: all(
                local.model.index(r, 6).data() not in ("Checking…", "not checked")
                for r in range(local.model.rowCount())
            )
        )
        shot(window, "local-models")

        window.show_page("Settings")
        shot(window, "settings")
        versions_shot(window, shot)
        chat_shot(window, shot)

        window.show_page("Models")
        wait_until(
            lambda: all(j.state in (JobState.DONE, JobState.FAILED) for j in window.controller.jobs.values()),
            60,
        )
        window.close()
        shiboken6.delete(window)

        apply_system_theme(app, force_dark=True)
        dark = new_window()
        wait_until(lambda: dark.models_page.table.proxy.rowCount() == 8)  # reopens the last repo
        wait_until(lambda: not dark.models_page.is_loading)
        dark.models_page.select_branch("gptq-4bit-32g-actorder_True")
        shot(dark, "models-dark")
        dark.close()
        shiboken6.delete(dark)

    for path in written:
        print(path.relative_to(ROOT))
    return 0


def search_only() -> int:
    """The first start and the search pictures."""

    def take(window: MainWindow, shot: Callable[[MainWindow, str], None]) -> None:
        shot(window, "models-first-start")
        search_shots(window, shot)

    return chat_only(take)


def chat_only(take: Callable[[MainWindow, Callable[[MainWindow, str], None]], None] | None = None) -> int:
    """Only the chat picture (``take``: other pictures of one window instead)."""
    with emulated_hub() as (_hub, _home):
        import shiboken6

        from app.ui.app import create_application, create_window
        from app.ui.error_center import uninstall_exception_hooks
        from app.ui.theme import apply_system_theme

        app = create_application()
        apply_system_theme(app, force_dark=False)
        window = create_window()
        uninstall_exception_hooks()
        window.resize(*SIZE)
        window.show()
        window.start_background()
        wait_until(lambda: window.hardware is not None)

        def shot(w: MainWindow, name: str) -> None:
            pump(0.3)
            w.grab().save(str(OUT / f"{name}.png"))
            print((OUT / f"{name}.png").relative_to(ROOT))

        (take or chat_shot)(window, shot)
        window.close()
        shiboken6.delete(window)
    return 0


if __name__ == "__main__":
    sys.exit(main())
