"""``quantdesk serve``: the official OpenAI client, QuantDesk's own remote engine and plain HTTP against
QuantDesk's server over real models (the tiny GPTQ Llama and SmolLM2-135M GPTQ, on the CPU)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import openai
import pytest

from app.backends.base import LoadedModel, LoadSettings, StopReason
from app.backends.gptqmodel import GPTQModelRules
from app.cli import main
from app.errors import ServeConfigError
from app.serve.app import ServeState
from app.serve.gate import GatedModel, ModelGate, Owner
from app.serve.runner import ServerRunner
from tests.models.fixtures import TINY_MAIN
from tests.serve_fixtures import running_server, wait_for_records

ROOT = Path(__file__).resolve().parent.parent
HELLO = [{"role": "user", "content": "Hello"}]


@pytest.fixture
def tiny_dir(tiny_models: dict[str, Path]) -> Path:
    return tiny_models[TINY_MAIN]


@pytest.fixture
def server(tiny_dir: Path, tiny_gptqmodel: LoadedModel) -> Iterator[tuple[ServerRunner, ServeState]]:
    with running_server(tiny_dir, tiny_gptqmodel) as running:
        yield running


@pytest.fixture(scope="module")
def smollm2(smollm2_dir: Path) -> Iterator[tuple[Path, LoadedModel]]:
    """SmolLM2-135M GPTQ loaded once: it writes long replies, so a cancel lands mid-reply."""
    model = GPTQModelRules().load(smollm2_dir, LoadSettings(device="cpu"))
    yield smollm2_dir, model
    model.unload()


def _client(runner: ServerRunner, key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=runner.url, api_key=key, max_retries=0)


# -- the official client -------------------------------------------------------------------------------


def test_chat_whole_and_streamed_agree_with_usage_and_length_finish(
    server: tuple[ServerRunner, ServeState],
) -> None:
    runner, state = server
    client = _client(runner)
    whole = client.chat.completions.create(model=state.model_id, messages=HELLO, max_tokens=12, temperature=0)
    assert whole.choices[0].finish_reason == "length"
    assert whole.usage is not None and whole.usage.completion_tokens == 12
    assert whole.usage.total_tokens == whole.usage.prompt_tokens + 12
    text = whole.choices[0].message.content
    assert text

    chunks = list(
        client.chat.completions.create(
            model=state.model_id,
            messages=HELLO,
            max_tokens=12,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == text
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].usage is not None and chunks[-1].usage.model_dump() == whole.usage.model_dump()
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) > 1  # it really streamed


@pytest.mark.parametrize("stream", [False, True])
def test_completions_end_before_a_stop_string(server: tuple[ServerRunner, ServeState], stream: bool) -> None:
    runner, state = server
    client = _client(runner)
    full = client.completions.create(model=state.model_id, prompt="The train", max_tokens=16, temperature=0)
    text = full.choices[0].text
    stop = text[len(text) // 2 : len(text) // 2 + 3]
    cut = text.index(stop)
    assert cut > 0, text
    if stream:
        parts = client.completions.create(
            model=state.model_id, prompt="The train", max_tokens=16, temperature=0, stop=[stop], stream=True
        )
        chunks = list(parts)
        got = "".join(c.choices[0].text for c in chunks if c.choices)
        finish = [c.choices[0].finish_reason for c in chunks if c.choices][-1]
    else:
        answer = client.completions.create(
            model=state.model_id, prompt="The train", max_tokens=16, temperature=0, stop=stop
        )
        got, finish = answer.choices[0].text, answer.choices[0].finish_reason
        assert answer.usage is not None and answer.usage.completion_tokens < 16
    assert (got, finish) == (text[:cut], "stop")


def test_quantdesk_chat_talks_to_quantdesk_serve(
    server: tuple[ServerRunner, ServeState], capsys: pytest.CaptureFixture[str]
) -> None:
    runner, state = server
    expected = _client(runner).chat.completions.create(
        model=state.model_id, messages=HELLO, max_tokens=8, temperature=0
    )
    code = main(
        ["chat", "--endpoint", runner.url, "--prompt", "Hello", "--max-new-tokens", "8", "--temperature", "0"]
    )
    out = capsys.readouterr()
    assert code == 0, out.err
    assert out.out.strip() == (expected.choices[0].message.content or "").strip()
    assert f"model {state.model_id}" in out.err


# -- plain HTTP: error shapes and status codes ----------------------------------------------------------


def _error(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]
    return dict(error)


def test_errors_have_openais_shape_and_status(server: tuple[ServerRunner, ServeState]) -> None:
    runner, state = server
    url = runner.url
    chat = f"{url}/chat/completions"
    unknown = _error(httpx.post(chat, json={"model": "gpt-4", "messages": HELLO}), 404)
    assert unknown["code"] == "model_not_found" and state.model_id in str(unknown["message"])
    assert _error(httpx.post(chat, content=b"{not json"), 400)["type"] == "invalid_request_error"
    assert (
        _error(httpx.post(chat, json={"model": state.model_id, "messages": "hi"}), 400)["param"] == "messages"
    )
    assert _error(httpx.get(f"{url}/nothing-here"), 404)["type"] == "invalid_request_error"

    long_prompt = [{"role": "user", "content": "word " * 700}]
    too_long = _error(httpx.post(chat, json={"model": state.model_id, "messages": long_prompt}), 400)
    assert too_long["code"] == "context_length_exceeded"
    assert "maximum context length is 512 tokens" in str(too_long["message"])
    assert "resulted in" in str(too_long["message"])
    asked_too_much = _error(
        httpx.post(chat, json={"model": state.model_id, "messages": HELLO, "max_tokens": 600}), 400
    )
    assert "600 in the completion" in str(asked_too_much["message"])
    assert list(state.records) == []  # nothing was generated for any of them


def test_wrong_or_missing_key_is_401_and_the_key_never_comes_back(
    tiny_dir: Path, tiny_gptqmodel: LoadedModel
) -> None:
    key = "sk-quantdesk-test-7f3a9c"
    with running_server(tiny_dir, tiny_gptqmodel, api_key=key) as (runner, state):
        with pytest.raises(openai.AuthenticationError) as refused:
            _client(runner, "sk-wrong").models.list()
        assert refused.value.status_code == 401
        missing = httpx.post(f"{runner.url}/completions", json={"model": state.model_id, "prompt": "Hi"})
        assert _error(missing, 401)["code"] == "invalid_api_key"
        assert key not in missing.text and key not in repr(state)
        assert [m.id for m in _client(runner, key).models.list()] == [state.model_id]


def test_503_with_retry_after_while_the_model_loads(tiny_dir: Path) -> None:
    with running_server(tiny_dir, None) as (runner, state):
        loading = httpx.post(
            f"{runner.url}/chat/completions", json={"model": state.model_id, "messages": HELLO}
        )
        assert _error(loading, 503)["code"] == "model_loading"
        assert int(loading.headers["retry-after"]) > 0
        listed = httpx.get(f"{runner.url}/models").json()
        assert [m["id"] for m in listed["data"]] == [state.model_id]


def test_past_the_bound_requests_get_429_with_retry_after(
    tiny_dir: Path, tiny_gptqmodel: LoadedModel
) -> None:
    with running_server(tiny_dir, tiny_gptqmodel, max_waiting=1) as (runner, state):
        gui = state.gate.reserve(Owner.GUI)  # the chat window is generating
        assert state.gate.wait(gui)
        body = {"model": state.model_id, "messages": HELLO, "max_tokens": 4, "temperature": 0}
        first: list[httpx.Response] = []
        waiter = threading.Thread(
            target=lambda: first.append(httpx.post(f"{runner.url}/chat/completions", json=body, timeout=300))
        )
        waiter.start()
        deadline = time.monotonic() + 10
        while state.gate.state().waiting < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        refused = httpx.post(f"{runner.url}/chat/completions", json=body)
        assert _error(refused, 429)["type"] == "rate_limit_error"
        assert int(refused.headers["retry-after"]) >= 1
        assert first == []  # the waiting one still waits for the GUI's turn
        state.gate.release(gui)
        waiter.join(30)
        assert first[0].status_code == 200


# -- sharing and cancelling ------------------------------------------------------------------------------


STORY = [{"role": "user", "content": "Write a very long story about a dragon and a baker."}]


@pytest.mark.slow
def test_a_client_that_disconnects_mid_stream_cancels_within_one_token(
    smollm2: tuple[Path, LoadedModel],
) -> None:
    with running_server(*smollm2) as (runner, state):
        body = {"model": state.model_id, "messages": STORY, "max_tokens": 300, "temperature": 0}
        url = f"{runner.url}/chat/completions"
        with (
            httpx.Client(timeout=300) as client,
            client.stream("POST", url, json={**body, "stream": True}) as reply,
        ):
            seen = 0
            for line in reply.iter_lines():
                seen += line.startswith("data: ")
                if seen == 3:
                    break  # leaving the block closes the connection mid-reply
        (record,) = wait_for_records(state, 1)
        assert record.disconnected and record.stop_reason is StopReason.CANCELLED
        assert record.chunks_after_cancel <= 1
        assert record.new_tokens < 300
        assert state.gate.state().generating is None


@pytest.mark.slow
def test_a_client_that_gives_up_on_a_whole_answer_cancels_it(smollm2: tuple[Path, LoadedModel]) -> None:
    with running_server(*smollm2) as (runner, state):
        body = {"model": state.model_id, "messages": STORY, "max_tokens": 300, "temperature": 0}
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{runner.url}/chat/completions", json=body, timeout=httpx.Timeout(5.0, read=0.5))
        (record,) = wait_for_records(state, 1)
        assert record.disconnected and record.stop_reason is StopReason.CANCELLED
        assert record.chunks_after_cancel <= 1 and record.new_tokens < 300


def test_two_concurrent_requests_take_turns_in_arrival_order(server: tuple[ServerRunner, ServeState]) -> None:
    runner, state = server
    client = _client(runner)
    texts: dict[int, str] = {}

    def ask(n: int) -> None:
        parts = client.completions.create(
            model=state.model_id, prompt="The train", max_tokens=30, temperature=0, stream=True
        )
        texts[n] = "".join(c.choices[0].text for c in parts if c.choices)

    first = threading.Thread(target=ask, args=(1,))
    first.start()
    while not state.records:
        time.sleep(0.005)
    second = threading.Thread(target=ask, args=(2,))
    second.start()
    first.join(60)
    second.join(60)
    one, two = wait_for_records(state, 2)
    assert one.started_at is not None and one.ended_at is not None and two.started_at is not None
    assert two.started_at >= one.ended_at  # never two generations at once
    assert texts[1] == texts[2] and texts[1]  # and each got its whole, undisturbed answer


def test_the_chat_window_and_the_api_take_turns(
    server: tuple[ServerRunner, ServeState], tiny_gptqmodel: LoadedModel
) -> None:
    from app.backends.base import Sampling

    runner, state = server
    gui_model = GatedModel(tiny_gptqmodel, state.gate, Owner.GUI)
    prompt = tiny_gptqmodel.tokenizer.encode("Hello")
    gui_items = gui_model.generate(prompt, Sampling(temperature=0, max_new_tokens=60), (), threading.Event())
    next(gui_items)  # the chat window is mid-reply: it holds the model until its stream ends
    assert state.gate.state().generating is Owner.GUI
    answer: list[str] = []
    client = _client(runner)
    api = threading.Thread(
        target=lambda: answer.append(
            client.completions.create(model=state.model_id, prompt="Hi", max_tokens=3).choices[0].text
        )
    )
    api.start()
    deadline = time.monotonic() + 10
    while state.gate.state().waiting < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert state.gate.state().waiting == 1 and answer == []  # the request waits its turn
    for _ in gui_items:
        pass
    gui_ended = time.monotonic()
    api.join(60)
    (record,) = wait_for_records(state, 1)
    assert record.started_at is not None and record.started_at >= gui_ended - 0.001
    assert len(answer) == 1


# -- safe by default ---------------------------------------------------------------------------------------


def test_another_host_without_a_key_is_refused_before_anything_loads(
    tiny_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    started = time.perf_counter()
    assert main(["serve", str(tiny_dir), "--host", "0.0.0.0", "--port", "0"]) == 1
    err = capsys.readouterr().err
    assert "0.0.0.0" in err and "API key" in err and "Traceback" not in err
    assert time.perf_counter() - started < 5  # refused up front, not after loading the model
    with pytest.raises(ServeConfigError):
        ServerRunner(ServeState("m"), "0.0.0.0", 0).start()


def test_another_host_with_a_key_serves_only_with_the_key(
    tiny_dir: Path, tiny_gptqmodel: LoadedModel
) -> None:
    with running_server(tiny_dir, tiny_gptqmodel, api_key="sk-lan-key-1", host="0.0.0.0") as (runner, _):
        local = f"http://127.0.0.1:{runner.port}/v1"
        assert httpx.get(f"{local}/models").status_code == 401
        assert (
            httpx.get(f"{local}/models", headers={"Authorization": "Bearer sk-lan-key-1"}).status_code == 200
        )


@pytest.mark.usefixtures("ctrl_c_reaches_children")
def test_the_serve_command_prints_its_url_and_stops_on_ctrl_c(tiny_dir: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "QUANTDESK_HOME": str(tmp_path / "home")}
    process = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", str(tiny_dir), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1"), url
        client = openai.OpenAI(base_url=url, api_key="unused", max_retries=0)
        (model,) = client.models.list()
        answer = client.chat.completions.create(model=model.id, messages=HELLO, max_tokens=4, temperature=0)
        assert answer.usage is not None and answer.usage.completion_tokens == 4
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
        assert process.returncode == 0, err
        assert out == ""  # stdout carries the URL line only
        assert "Traceback" not in err
    finally:
        if process.poll() is None:
            process.kill()


# -- a real small model -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_smollm2_answers_through_the_official_client(smollm2: tuple[Path, LoadedModel]) -> None:
    with running_server(*smollm2) as (runner, state):
        parts = _client(runner).chat.completions.create(
            model=state.model_id,
            messages=[{"role": "user", "content": "What is the capital of France?"}],
            max_tokens=24,
            temperature=0,
            stream=True,
        )
        text = "".join(c.choices[0].delta.content or "" for c in parts if c.choices)
    assert "Paris" in text


def test_serving_the_chat_windows_gated_model_does_not_wait_on_itself(
    tiny_dir: Path, tiny_gptqmodel: LoadedModel
) -> None:
    gate = ModelGate()
    chat_windows_model = GatedModel(tiny_gptqmodel, gate, Owner.GUI)  # what the Chat page holds
    with running_server(tiny_dir, chat_windows_model, gate=gate) as (runner, state):
        body = {"model": state.model_id, "prompt": "The train", "max_tokens": 3, "temperature": 0}
        answer = httpx.post(f"{runner.url}/completions", json=body, timeout=60)
        assert answer.status_code == 200 and answer.json()["usage"]["completion_tokens"] >= 1
