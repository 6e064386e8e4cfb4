"""The chat page keeps the peak memory of each reply for the catalog's "measured here" (real tiny Llama)."""

from __future__ import annotations

from pathlib import Path

from pytestqt.qtbot import QtBot

from app.catalog.measured import MeasuredStore
from app.ui.chat import ChatPage
from tests.models.fixtures import TINY_MAIN
from tests.ui.test_chat_page import load, make_page, send

__all__ = ["make_page"]  # the fixture, imported so pytest finds it here


def test_a_reply_keeps_the_peak_for_this_model_context_and_cache(
    qtbot: QtBot, make_page: object, tiny_models: dict[str, Path]
) -> None:
    page: ChatPage = make_page()  # type: ignore[operator]
    info = load(qtbot, page, tiny_models[TINY_MAIN])
    assert MeasuredStore().for_repo(info.profile_repo) == []  # a load alone measures no reply
    outcome = send(qtbot, page, "Hello")
    assert outcome.stats is not None
    # written on the chat thread right after the reply is shown
    qtbot.waitUntil(lambda: len(MeasuredStore().for_repo(info.profile_repo)) == 1, timeout=10_000)
    [kept] = MeasuredStore().for_repo(info.profile_repo)
    assert (kept.branch, kept.backend, kept.device) == (info.profile_branch, "gptqmodel", "cpu")
    assert kept.context == info.context_length and kept.cache_type == "fp16"
    assert kept.prompt_tokens == outcome.stats.prompt_tokens and kept.peak_bytes >= info.memory_bytes
