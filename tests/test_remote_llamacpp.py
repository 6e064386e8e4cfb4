"""The remote engine against a real OpenAI-compatible server: llama-cpp-python serving SmolLM2-135M.

Greedy decoding and short replies keep each test to a second or two on two CPU cores.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest

from app.backends.base import GenerationStats, Sampling, StopReason
from app.chat.engine import ChatSession, ChatSettings, ReplyEnd
from app.chat.templates import ChatMessage, Role, get_template, render_text
from app.cli import main
from app.errors import EndpointAuthError, RemoteModelNotFoundError, StreamInterruptedError
from app.remote import endpoints
from app.remote.endpoints import Endpoint, TemplateMode, template_choice
from app.remote.engine import RemoteModel
from tests.remote_fixtures import LlamaServer

SYSTEM = "You are a helpful assistant."
GREEDY = Sampling(temperature=0.0, max_new_tokens=24, repetition_penalty=1.0)


class RecordingTransport(httpx2.HTTPTransport):
    """The real network layer, keeping every POST body the client sends."""

    def __init__(self) -> None:
        super().__init__()
        self.posts: list[tuple[str, dict[str, Any]]] = []

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        if request.method == "POST":
            self.posts.append((request.url.path, json.loads(request.content)))
        return super().handle_request(request)


def _session(
    server: LlamaServer,
    mode: TemplateMode = TemplateMode.SERVER,
    *,
    transport: httpx2.BaseTransport | None = None,
    sampling: Sampling = GREEDY,
) -> ChatSession:
    model = RemoteModel.connect(server.base_url, api_key=server.api_key, transport=transport)
    endpoint = Endpoint("test", server.base_url, model.model_id, template_mode=mode, template="ChatML")
    settings = ChatSettings(system_prompt=SYSTEM, sampling=sampling)
    return ChatSession(model, template_choice(endpoint), settings=settings)


def _reply(chunks: Iterator[str | ReplyEnd]) -> tuple[list[str], ReplyEnd]:
    texts: list[str] = []
    for item in chunks:
        if isinstance(item, ReplyEnd):
            return texts, item
        texts.append(item)
    raise AssertionError("the stream ended without a ReplyEnd")


@pytest.fixture
def sessions() -> Iterator[list[ChatSession]]:
    """Sessions a test opens; their models are closed afterwards."""
    opened: list[ChatSession] = []
    yield opened
    for session in opened:
        session.model.unload()


def test_streams_paris_through_the_chat_engine(
    llama_server: LlamaServer, sessions: list[ChatSession]
) -> None:
    session = _session(llama_server)
    sessions.append(session)
    chunks, end = _reply(session.send("What is the capital of France?"))
    reply = "".join(chunks)
    assert "Paris" in reply
    assert len(chunks) > 2, "the reply must stream in pieces"
    assert end.message.content == reply.strip() and end.message.stop_reason == "eos"
    stats = end.stats
    assert stats.stop_reason is StopReason.EOS
    assert 0 < stats.time_to_first_token < stats.seconds
    assert stats.new_tokens == len(chunks)  # llama.cpp sends one token per event and no usage
    assert stats.tokens_per_second > 0


def test_cli_prompt_against_the_server(
    llama_server: LlamaServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("QD_TEST_KEY", llama_server.api_key or "")
    argv = ["chat", "--endpoint", llama_server.base_url, "--api-key-env", "QD_TEST_KEY"]
    argv += ["--system", SYSTEM, "--temperature", "0", "--max-new-tokens", "24"]
    assert main([*argv, "--prompt", "What is the capital of France?"]) == 0
    captured = capsys.readouterr()
    assert "Paris" in captured.out
    assert "tokens/s" in captured.err and "model smollm2" in captured.err
    assert llama_server.api_key not in captured.out + captured.err


@pytest.mark.parametrize("mode", [TemplateMode.SERVER, TemplateMode.QUANTDESK])
def test_multi_turn_history_is_sent(
    llama_server: LlamaServer, sessions: list[ChatSession], mode: TemplateMode
) -> None:
    transport = RecordingTransport()
    session = _session(llama_server, mode, transport=transport, sampling=Sampling(0.0, max_new_tokens=12))
    sessions.append(session)
    _, first = _reply(session.send("My name is Ada."))
    _, second = _reply(session.send("What is my name?"))
    assert first.message.content and second.stats.new_tokens > 0
    path, body = transport.posts[-1]
    turns = [
        ChatMessage(Role.SYSTEM, SYSTEM),
        ChatMessage(Role.USER, "My name is Ada."),
        ChatMessage(Role.ASSISTANT, first.message.content),
        ChatMessage(Role.USER, "What is my name?"),
    ]
    if mode is TemplateMode.SERVER:
        assert path == "/v1/chat/completions"
        assert body["messages"] == [{"role": m.role.value, "content": m.content} for m in turns]
    else:
        assert path == "/v1/completions"
        expected = render_text(get_template("ChatML").render(turns, add_generation_prompt=True))
        assert body["prompt"] == expected
        assert body["stop"] == ["<|im_end|>"]
    assert body["stream"] is True and body["temperature"] == 0 and body["max_tokens"] == 12
    assert body["model"] == "smollm2"


def test_server_and_quantdesk_templates_give_the_same_chatml_prompt(llama_server: LlamaServer) -> None:
    """SmolLM2's own template is ChatML: the server's rendering and QuantDesk's must be the same tokens."""
    turns = [
        ChatMessage(Role.SYSTEM, SYSTEM),
        ChatMessage(Role.USER, "Hello!"),
        ChatMessage(Role.ASSISTANT, "Hi! How can I help you today?"),
        ChatMessage(Role.USER, "What is the capital of France?"),
    ]
    quantdesk_prompt = render_text(get_template("ChatML").render(turns, add_generation_prompt=True))
    body = {"model": "smollm2", "max_tokens": 16, "temperature": 0, "repeat_penalty": 1.0}
    with httpx2.Client(base_url=llama_server.base_url, headers=llama_server.headers(), timeout=60) as client:
        # The server renders the messages with the model's own template ...
        chat = client.post(
            "/chat/completions",
            json={**body, "messages": [{"role": m.role.value, "content": m.content} for m in turns]},
        ).json()
        # ... and tokenizes QuantDesk's rendering (special tokens parsed, as for /v1/completions).
        tokens = client.post(
            f"http://127.0.0.1:{llama_server.port}/extras/tokenize", json={"input": quantdesk_prompt}
        ).json()["tokens"]
        raw = client.post("/completions", json={**body, "prompt": quantdesk_prompt}).json()
    assert chat["usage"]["prompt_tokens"] == len(tokens) == raw["usage"]["prompt_tokens"]
    # Same prompt tokens, greedy: the same reply, through QuantDesk's client in both modes too.
    assert chat["choices"][0]["message"]["content"] == raw["choices"][0]["text"]
    replies = []
    for mode in (TemplateMode.SERVER, TemplateMode.QUANTDESK):
        session = _session(llama_server, mode, sampling=Sampling(temperature=0.0, max_new_tokens=16))
        try:
            for message in turns[1:-1]:
                session.conversation.add(message.role, message.content)
            replies.append("".join(c for c in session.send(turns[-1].content) if isinstance(c, str)))
        finally:
            session.model.unload()
    assert replies[0] == replies[1] == raw["choices"][0]["text"].strip()


def test_cancel_closes_the_stream_at_once(llama_server: LlamaServer) -> None:
    model = RemoteModel.connect(llama_server.base_url, api_key=llama_server.api_key)
    cancel = threading.Event()
    long = Sampling(temperature=0.0, max_new_tokens=400, repetition_penalty=1.0)
    timer = threading.Timer(0.0, cancel.set)
    cancelled_at = 0.0
    pieces: list[str] = []
    stats: GenerationStats | None = None
    try:
        for item in model.generate("Once upon a time", long, [], cancel):
            if isinstance(item, GenerationStats):
                stats = item
                ended_at = time.perf_counter()
            else:
                pieces.append(item)
                if len(pieces) == 3:
                    # Cancel from another thread while this one waits for the next token.
                    timer = threading.Timer(0.02, cancel.set)
                    timer.start()
                    cancelled_at = time.perf_counter() + 0.02
        assert stats is not None
        assert stats.stop_reason is StopReason.CANCELLED
        assert 3 <= stats.new_tokens < 60
        assert ended_at - cancelled_at < 0.5
        # The server noticed the closed stream and stopped: a new request is served right away.
        started = time.perf_counter()
        quick = Sampling(temperature=0.0, max_new_tokens=4, repetition_penalty=1.0)
        items = list(model.generate("The sky is", quick, [], threading.Event()))
        assert isinstance(items[-1], GenerationStats) and items[-1].new_tokens > 0
        assert time.perf_counter() - started < 5
    finally:
        timer.cancel()
        model.unload()


def test_server_killed_mid_stream_keeps_the_partial_reply(disposable_llama_server: LlamaServer) -> None:
    server = disposable_llama_server
    model = RemoteModel.connect(server.base_url)
    long = Sampling(temperature=0.0, max_new_tokens=400, repetition_penalty=1.0)
    session = ChatSession(
        model, template_choice(Endpoint("t", server.base_url)), settings=ChatSettings(sampling=long)
    )
    shown: list[str] = []
    try:
        with pytest.raises(StreamInterruptedError) as caught:
            for item in session.send("Tell me a long story about a dragon."):
                if isinstance(item, str):
                    shown.append(item)
                    if len(shown) == 4:
                        server.kill()
        reply = session.conversation.messages[-1]
        assert reply.role is Role.ASSISTANT
        assert reply.content and reply.content == "".join(shown).strip()
        assert reply.stop_reason == "error" and reply.complete
        error = caught.value
        assert error.partial_text == "".join(shown)
        assert "partial reply is kept" in error.user_message
    finally:
        model.unload()


def test_wrong_or_missing_api_key(llama_server: LlamaServer) -> None:
    wrong = "not-the-key-9876"
    with pytest.raises(EndpointAuthError) as caught:
        RemoteModel.connect(llama_server.base_url, api_key=wrong)
    assert caught.value.status == 401 and "refused the API key" in caught.value.message
    everything = caught.value.user_message + caught.value.detail + repr(caught.value)
    assert wrong not in everything and str(llama_server.api_key) not in everything
    with pytest.raises(EndpointAuthError, match="needs an API key"):
        RemoteModel.connect(llama_server.base_url)
    with pytest.raises(EndpointAuthError):
        endpoints.test_connection(Endpoint("t", llama_server.base_url), api_key=wrong)


def test_unknown_model_id(llama_server: LlamaServer, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(RemoteModelNotFoundError) as caught:
        RemoteModel.connect(llama_server.base_url, "no-such-model", api_key=llama_server.api_key)
    assert caught.value.available == ("smollm2",)
    assert "does not serve a model called 'no-such-model'" in caught.value.message
    assert "smollm2" in caught.value.hint
    report = endpoints.test_connection(
        Endpoint("t", llama_server.base_url, "no-such-model"), api_key=llama_server.api_key
    )
    assert not report.model_found and "'no-such-model' is not served" in report.message


def test_connection_report(llama_server: LlamaServer) -> None:
    report = endpoints.test_connection(Endpoint("t", llama_server.base_url), api_key=llama_server.api_key)
    assert report.model_found and report.model == "smollm2"
    assert [m.id for m in report.models] == ["smollm2"]
    assert "using 'smollm2'" in report.message
