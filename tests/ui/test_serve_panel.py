"""The "Serve this model" panel on its own, over the tiny GPTQ model loaded through the real load path."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from pytestqt.qtbot import QtBot

from app.backends.base import LoadedModel
from app.backends.cpu_threads import threads_beside_a_window, usable_cpus
from app.chat.profiles import ProfileStore
from app.chat.session_setup import LocalTarget, load_local, plan_local_chat, select_backend
from app.serve.gate import ModelGate, Owner
from app.serve.setup import served_model
from app.ui.serve_panel import GENERATING_TEXT, IDLE_TEXT, ServePanel
from tests.models.fixtures import TINY_MAIN

WAIT_MS = 60_000


@pytest.fixture
def loaded(tiny_models: dict[str, Path]) -> Iterator[tuple[object, LoadedModel]]:
    """The tiny model planned and loaded the way the Chat page and ``quantdesk serve`` do."""
    plan = plan_local_chat(LocalTarget(tiny_models[TINY_MAIN]), profiles=ProfileStore())
    model = load_local(select_backend(plan.files, "gptqmodel"), plan.files, plan.effective.load_settings())
    yield plan, model
    model.unload()


class PoolSizeSeen:
    """The loaded model, noting the torch pool size of each thread that generates with it."""

    def __init__(self, inner: LoadedModel) -> None:
        self.inner = inner
        self.pool_sizes: list[int] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        import torch

        self.pool_sizes.append(torch.get_num_threads())
        return self.inner.generate(*args, **kwargs)


def test_toggle_serves_the_model_counts_requests_and_shows_api_generation(
    qtbot: QtBot, loaded: tuple[object, LoadedModel], tmp_path: Path
) -> None:
    plan, real_model = loaded
    model = PoolSizeSeen(real_model)
    served = served_model(plan, model)  # type: ignore[arg-type]
    gate = ModelGate()
    panel = ServePanel(port=0)
    qtbot.addWidget(panel)
    panel.show()
    assert not panel.toggle.isEnabled()  # nothing to serve yet
    panel.set_model(served, gate)
    assert panel.toggle.isEnabled()

    with qtbot.waitSignal(panel.serving_changed, timeout=WAIT_MS) as started:
        panel.toggle.setChecked(True)
    assert started.args == [True]
    url = panel.url.text()
    assert url.startswith("http://127.0.0.1:") and url.endswith("/v1")
    panel.grab().save(str(tmp_path / "serve_panel.png"))

    activity: list[str] = []
    panel.activity_changed.connect(activity.append)
    answers: list[httpx.Response] = []
    body = {"model": served.model_id, "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 4}
    request = threading.Thread(
        target=lambda: answers.append(httpx.post(f"{url}/chat/completions", json=body, timeout=300))
    )
    request.start()  # a client on another thread; the GUI thread keeps serving events
    qtbot.waitUntil(lambda: panel.requests.text() == "1 API request", timeout=WAIT_MS)
    qtbot.waitUntil(lambda: bool(answers) and panel.activity.text() == IDLE_TEXT, timeout=WAIT_MS)
    request.join(5)
    assert answers[0].status_code == 200
    assert GENERATING_TEXT in activity  # the indicator showed the API request while it generated
    # As the window's own chat: the request's thread gives the model every core but one.
    assert model.pool_sizes == [threads_beside_a_window(usable_cpus(), os.environ.get("OMP_NUM_THREADS"))]

    with qtbot.waitSignal(panel.serving_changed, timeout=WAIT_MS) as stopped:
        panel.toggle.setChecked(False)
    assert stopped.args == [False]
    assert panel.url.text() == ""
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/models")


def test_api_requests_wait_while_the_chat_replies(qtbot: QtBot, loaded: tuple[object, LoadedModel]) -> None:
    plan, model = loaded
    gate = ModelGate()
    panel = ServePanel(port=0)
    qtbot.addWidget(panel)
    panel.set_model(served_model(plan, model), gate)  # type: ignore[arg-type]
    chat_turn = gate.reserve(Owner.GUI)
    assert gate.wait(chat_turn)
    api_turn = gate.reserve(Owner.API)
    qtbot.waitUntil(lambda: "wait" in panel.activity.text(), timeout=5_000)
    gate.release(chat_turn)
    gate.release(api_turn)
    qtbot.waitUntil(lambda: panel.activity.text() == IDLE_TEXT, timeout=5_000)


def test_a_taken_port_is_reported_in_words_and_the_toggle_turns_back_off(
    qtbot: QtBot, loaded: tuple[object, LoadedModel]
) -> None:
    import socket

    plan, model = loaded
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(1)
    try:
        panel = ServePanel(port=blocker.getsockname()[1])
        qtbot.addWidget(panel)
        panel.set_model(served_model(plan, model), ModelGate())  # type: ignore[arg-type]
        panel.toggle.setChecked(True)
        qtbot.waitUntil(lambda: not panel.toggle.isChecked(), timeout=WAIT_MS)
        assert "Cannot listen on 127.0.0.1" in panel.status.text()
        assert not panel.serving
    finally:
        blocker.close()
