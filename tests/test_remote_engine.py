"""The remote engine's failure handling and pieces, against a scripted HTTP server (no model needed).

A healthy server never rate-limits, fails with 5xx, stalls or sends broken events on cue; the scripted
server does, so each failure gets its typed error, a clear message, and the partial reply is kept.
"""

from __future__ import annotations

import asyncio
import io
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest

from app.backends.base import GenerationStats, Sampling, StopReason
from app.chat.engine import ChatSession, ChatSettings, ReplyEnd
from app.chat.templates import ChatMessage, Role
from app.cli import main
from app.errors import (
    EndpointConfigError,
    EndpointNotCompatibleError,
    EndpointTimeoutError,
    EndpointUnreachableError,
    MalformedStreamError,
    RateLimitedError,
    RemoteError,
    RemoteModelNotFoundError,
    RemoteRequestError,
    RemoteServerError,
    StreamInterruptedError,
)
from app.remote.client import OpenAIClient, Timeouts
from app.remote.endpoints import Endpoint, template_choice
from app.remote.engine import RemoteModel
from app.remote.prompting import RemoteTokenizer, ServerTemplate, pack_messages, unpack_messages
from app.remote.wire import (
    RemoteModelInfo,
    StreamEnd,
    api_url,
    display_url,
    retry_after_seconds,
    sampling_fields,
)
from tests.remote_fixtures import (
    Recorded,
    ScriptedServer,
    chat_chunk,
    free_port,
    models_answer,
    send_json,
    sse,
    start_sse,
)

QUICK = Sampling(temperature=0.0, max_new_tokens=16)


def _serve(server: ScriptedServer, post: Any, models: tuple[str, ...] = ("m",)) -> None:
    """GET /v1/models lists ``models``; every POST runs ``post(record, handler)``."""

    def script(record: Recorded, handler: BaseHTTPRequestHandler) -> None:
        if record.method == "GET":
            models_answer(handler, *models)
        else:
            post(record, handler)

    server.script = script


def _run(model: RemoteModel, cancel: threading.Event | None = None) -> tuple[str, GenerationStats]:
    text: list[str] = []
    stats: GenerationStats | None = None
    for item in model.generate(
        pack_messages([ChatMessage(Role.USER, "hi")]), QUICK, [], cancel or threading.Event()
    ):
        if isinstance(item, GenerationStats):
            stats = item
        else:
            text.append(item)
    assert stats is not None
    return "".join(text), stats


@pytest.fixture
def connect(scripted_server: ScriptedServer) -> Any:
    opened: list[RemoteModel] = []

    def _connect(**options: Any) -> RemoteModel:
        model = RemoteModel.connect(scripted_server.base_url, **options)
        opened.append(model)
        return model

    yield _connect
    for model in opened:
        model.unload()


# -- HTTP errors -------------------------------------------------------------------------------------


def test_rate_limited_with_retry_after(scripted_server: ScriptedServer, connect: Any) -> None:
    _serve(scripted_server, lambda r, h: send_json(h, 429, {"error": "slow down"}, {"Retry-After": "7"}))
    with pytest.raises(RateLimitedError) as caught:
        _run(connect())
    assert caught.value.retry_after == 7
    assert "busy" in caught.value.message and "retry in 7 s" in caught.value.hint


def test_retry_after_as_http_date() -> None:
    now = datetime(2026, 11, 22, 10, 0, 0, tzinfo=UTC)
    assert retry_after_seconds("Sun, 22 Nov 2026 10:00:30 GMT", now) == 30
    assert retry_after_seconds("2.5") == 2.5
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_errors(scripted_server: ScriptedServer, connect: Any, status: int) -> None:
    _serve(scripted_server, lambda r, h: send_json(h, status, {"error": {"message": "CUDA out of memory"}}))
    with pytest.raises(RemoteServerError) as caught:
        _run(connect())
    assert caught.value.status == status
    assert f"failed ({status}): CUDA out of memory" in caught.value.message


def test_vllm_style_unknown_model_404(scripted_server: ScriptedServer, connect: Any) -> None:
    body = {
        "object": "error",
        "message": "The model `big` does not exist.",
        "type": "NotFoundError",
        "code": 404,
    }
    _serve(scripted_server, lambda r, h: send_json(h, 404, body))
    # A server without a model list (404 there too) is accepted when the model id is given ...
    scripted_server.script = lambda r, h: send_json(
        h, 404, body if r.method == "POST" else {"detail": "Not Found"}
    )
    model = connect(model_id="big")
    # ... and the chat request then says the model is unknown.
    with pytest.raises(RemoteModelNotFoundError, match="does not serve a model called 'big'"):
        _run(model)


def test_wrong_route_is_not_a_model_error(scripted_server: ScriptedServer, connect: Any) -> None:
    scripted_server.script = lambda r, h: send_json(h, 404, {"detail": "Not Found"})
    with pytest.raises(EndpointNotCompatibleError, match="no OpenAI-compatible route /v1/models"):
        connect()


def test_context_overflow_400(scripted_server: ScriptedServer, connect: Any) -> None:
    message = "This model's maximum context length is 2048 tokens. However, you requested 3000 tokens."
    _serve(scripted_server, lambda r, h: send_json(h, 400, {"error": {"message": message}}))
    with pytest.raises(RemoteRequestError) as caught:
        _run(connect())
    assert "maximum context length" in caught.value.message and "Shorten" in caught.value.hint


def test_several_models_need_a_choice(scripted_server: ScriptedServer, connect: Any) -> None:
    _serve(scripted_server, None, models=("a", "b"))
    with pytest.raises(RemoteModelNotFoundError) as caught:
        connect()
    assert caught.value.available == ("a", "b") and "choose one" in caught.value.message
    assert connect(model_id="B").model_id == "b"  # case-insensitive when unambiguous


# -- transport failures --------------------------------------------------------------------------------


def test_connection_refused() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(EndpointUnreachableError, match="the connection was refused"):
        RemoteModel.connect(url)


def test_timeout_before_the_reply(scripted_server: ScriptedServer, connect: Any) -> None:
    _serve(scripted_server, lambda r, h: time.sleep(1.0))
    model = connect(timeouts=Timeouts(connect=2.0, read=0.3))
    with pytest.raises(EndpointTimeoutError, match="did not answer in time"):
        _run(model)


def test_stall_mid_reply_keeps_the_partial_text(scripted_server: ScriptedServer, connect: Any) -> None:
    def stall(record: Recorded, handler: BaseHTTPRequestHandler) -> None:
        start_sse(handler)
        sse(handler, chat_chunk("Hello"))
        time.sleep(1.0)

    _serve(scripted_server, stall)
    with pytest.raises(StreamInterruptedError) as caught:
        _run(connect(timeouts=Timeouts(connect=2.0, read=0.3)))
    assert caught.value.partial_text == "Hello" and "stalled" in caught.value.message


def test_stream_cut_mid_reply(scripted_server: ScriptedServer, connect: Any) -> None:
    def cut(record: Recorded, handler: BaseHTTPRequestHandler) -> None:
        start_sse(handler)
        sse(handler, chat_chunk("Hello"))
        sse(handler, chat_chunk(" wor"))
        # The connection closes here: no finish_reason, no [DONE].

    _serve(scripted_server, cut)
    model = connect()
    session = ChatSession(model, template_choice(Endpoint("t", scripted_server.base_url)))
    shown: list[str] = []
    with pytest.raises(StreamInterruptedError) as caught:
        for item in session.send("hi"):
            if isinstance(item, str):
                shown.append(item)
    assert "".join(shown) == "Hello wor" == caught.value.partial_text
    reply = session.conversation.messages[-1]
    assert reply.content == "Hello wor" and reply.stop_reason == "error"
    assert "partial reply is kept" in caught.value.user_message


@pytest.mark.parametrize(
    ("events", "what"),
    [
        (["{not json"], "not JSON"),
        (['{"object": "chat.completion.chunk"}'], "without choices"),
        (["[1, 2]"], "not an object"),
    ],
)
def test_malformed_sse(scripted_server: ScriptedServer, connect: Any, events: list[str], what: str) -> None:
    def broken(record: Recorded, handler: BaseHTTPRequestHandler) -> None:
        start_sse(handler)
        sse(handler, chat_chunk("Par"))
        for event in events:
            sse(handler, event)

    _serve(scripted_server, broken)
    with pytest.raises(MalformedStreamError) as caught:
        _run(connect())
    assert what in caught.value.message and caught.value.partial_text == "Par"
    assert "partial reply is kept" in caught.value.message


def test_not_an_event_stream(scripted_server: ScriptedServer, connect: Any) -> None:
    def html(record: Recorded, handler: BaseHTTPRequestHandler) -> None:
        payload = b"<html>proxy login</html>"
        handler.send_response(200)
        handler.send_header("Content-Type", "text/html")
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)

    _serve(scripted_server, html)
    with pytest.raises(MalformedStreamError, match="content type text/html"):
        _run(connect())


def test_error_event_mid_stream(scripted_server: ScriptedServer, connect: Any) -> None:
    def failing(record: Recorded, handler: BaseHTTPRequestHandler) -> None:
        start_sse(handler)
        sse(handler, chat_chunk("Hi"))
        sse(handler, {"error": {"message": "engine died", "code": 500}})

    _serve(scripted_server, failing)
    with pytest.raises(RemoteServerError, match="engine died"):
        _run(connect())


# -- what healthy servers send -----------------------------------------------------------------------


def test_usage_stop_reason_comments_and_final_usage_chunk(
    scripted_server: ScriptedServer, connect: Any
) -> None:
    """vLLM style: a ping comment, role-only first chunk, stop_reason naming the stop string, and a
    usage-only chunk with empty choices before [DONE]."""

    def vllm(record: Recorded, handler: BaseHTTPRequestHandler) -> None:
        start_sse(handler)
        handler.wfile.write(b": ping\n\n")
        sse(handler, {"choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}]})
        for piece in ("The", " answer", " is"):
            sse(handler, chat_chunk(piece))
        sse(handler, chat_chunk(None, finish="stop", stop_reason="###"))
        sse(handler, {"choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": 4}})
        sse(handler, "[DONE]")

    _serve(scripted_server, vllm)
    text, stats = _run(connect())
    assert text == "The answer is"
    assert stats.prompt_tokens == 11 and stats.new_tokens == 4  # usage wins over counted chunks
    assert stats.stop_reason is StopReason.STOP_STRING and stats.stop_string == "###"


def test_server_that_ignores_stream_true(scripted_server: ScriptedServer, connect: Any) -> None:
    answer = {
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "Paris."}, "finish_reason": "length"}
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2},
    }
    _serve(scripted_server, lambda r, h: send_json(h, 200, answer))
    text, stats = _run(connect())
    assert text == "Paris." and stats.stop_reason is StopReason.LENGTH and stats.new_tokens == 2


def test_stop_strings_are_matched_across_chunks(scripted_server: ScriptedServer, connect: Any) -> None:
    def chunks(record: Recorded, handler: BaseHTTPRequestHandler) -> None:
        start_sse(handler)
        for piece in ("Sure.", "\n#", "## Human:", " more"):
            sse(handler, {"choices": [{"index": 0, "text": piece, "finish_reason": None}]})
        sse(handler, "[DONE]")

    _serve(scripted_server, chunks)
    model = connect()
    items = list(model.generate("### Human: hi\n### Assistant:", QUICK, ["\n### Human:"], threading.Event()))
    assert "".join(i for i in items if isinstance(i, str)) == "Sure."
    stats = items[-1]
    assert isinstance(stats, GenerationStats) and stats.stop_reason is StopReason.STOP_STRING
    body = scripted_server.requests[-1].body
    assert scripted_server.requests[-1].path == "/v1/completions" and body["stop"] == ["\n### Human:"]


def test_cancel_while_waiting_for_the_first_token(scripted_server: ScriptedServer, connect: Any) -> None:
    def silent(record: Recorded, handler: BaseHTTPRequestHandler) -> None:
        start_sse(handler)
        for _ in range(50):  # a slow prompt: nothing to send yet, then the client must be gone
            time.sleep(0.05)
            try:
                handler.wfile.write(b": still thinking\n\n")
                handler.wfile.flush()
            except OSError:
                scripted_server.disconnected.set()
                return

    _serve(scripted_server, silent)
    model = connect()
    cancel = threading.Event()
    threading.Timer(0.2, cancel.set).start()
    started = time.perf_counter()
    text, stats = _run(model, cancel)
    took = time.perf_counter() - started
    assert text == "" and stats.stop_reason is StopReason.CANCELLED and stats.new_tokens == 0
    assert 0.15 < took < 1.0
    assert scripted_server.disconnected.wait(2), "the HTTP stream was not closed"


# -- request mapping ------------------------------------------------------------------------------------


def test_sampling_fields() -> None:
    sampled = Sampling(
        temperature=0.7, top_p=0.9, top_k=40, min_p=0.05, repetition_penalty=1.1, max_new_tokens=99, seed=3
    )
    assert sampling_fields(sampled, ["</s>", "</s>", ""]) == {
        "temperature": 0.7,
        "top_p": 0.9,
        "max_tokens": 99,
        "stop": ["</s>"],
        "seed": 3,
        "top_k": 40,
        "min_p": 0.05,
        "repetition_penalty": 1.1,
        "repeat_penalty": 1.1,
    }
    greedy = sampling_fields(Sampling(temperature=0.0), extra=False)
    assert greedy == {"temperature": 0.0, "top_p": 1.0, "max_tokens": 512}


def test_urls() -> None:
    assert api_url("http://h:8000", "models") == "http://h:8000/v1/models"
    assert api_url("http://h:8000/v1/", "/chat/completions") == "http://h:8000/v1/chat/completions"
    assert api_url("https://h/openai/v1", "models") == "https://h/openai/v1/models"
    assert display_url("http://user:secret@h:8000/v1") == "http://h:8000/v1"


def test_tokenizer_round_trips_and_estimates_generously() -> None:
    tok = RemoteTokenizer()
    for text in (
        "",
        "Hello, world!",
        "  two  spaces\n\nand\ttabs",
        "naïve café 東京 🙂",
        "x" * 50,
        "12345.678",
    ):
        assert tok.decode(tok.encode(text)) == text
    english = "The capital of France is Paris, a city of about two million people."
    assert len(tok.encode(english)) >= len(english) / 4.5  # BPE needs ~1 token per 4-5 characters
    assert tok.render([tok.bos_token_id or 0, *tok.encode("[INST] hi")]) == "<s>[INST] hi"
    assert tok.decode([tok.bos_token_id or 0, *tok.encode("hi")]) == "hi"


def test_server_template_wire_format() -> None:
    messages = [ChatMessage(Role.SYSTEM, "Be brief."), ChatMessage(Role.USER, 'Say "hi"\n\u0000 and </s>')]
    segments = ServerTemplate().render(messages)
    assert len(segments) == 1 and isinstance(segments[0], str)
    assert unpack_messages(segments[0]) == (messages, False)
    assert unpack_messages("plain prompt") is None
    continued = ServerTemplate().render([*messages, ChatMessage(Role.ASSISTANT, "Hi")], continue_final=True)
    assert unpack_messages(str(continued[0])) is not None and unpack_messages(str(continued[0]))[1]  # type: ignore[index]


def test_context_length_from_the_model_list(scripted_server: ScriptedServer, connect: Any) -> None:
    scripted_server.script = lambda r, h: send_json(
        h, 200, {"data": [{"id": "TheBloke/Llama-2-70B-GPTQ", "max_model_len": 8192}]}
    )
    assert connect().context_length == 8192
    assert connect(context_length=1024).context_length == 1024


def test_continue_reply_in_server_mode_asks_to_continue(
    scripted_server: ScriptedServer, connect: Any
) -> None:
    def ok(record: Recorded, handler: BaseHTTPRequestHandler) -> None:
        start_sse(handler)
        sse(handler, chat_chunk(" more", finish="stop"))
        sse(handler, "[DONE]")

    _serve(scripted_server, ok)
    session = ChatSession(connect(), template_choice(Endpoint("t", scripted_server.base_url)))
    list(session.send("hi"))
    list(session.continue_reply())
    body = scripted_server.requests[-1].body
    assert body["messages"][-1] == {"role": "assistant", "content": "more"}
    assert body["continue_final_message"] is True and body["add_generation_prompt"] is False


# -- the CLI ------------------------------------------------------------------------------------------------


def test_cli_repl_survives_a_broken_reply(
    scripted_server: ScriptedServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    calls = {"n": 0}

    def replies(record: Recorded, handler: BaseHTTPRequestHandler) -> None:
        calls["n"] += 1
        start_sse(handler)
        sse(handler, chat_chunk("Part"))
        if calls["n"] == 1:
            return  # cut
        sse(handler, chat_chunk("ial fine", finish="stop"))
        sse(handler, "[DONE]")

    _serve(scripted_server, replies)
    monkeypatch.setattr("sys.stdin", io.StringIO("first\nsecond\n/exit\n"))
    assert main(["chat", "--endpoint", scripted_server.base_url]) == 0
    captured = capsys.readouterr()
    assert "Part\n" in captured.out and "Partial fine" in captured.out
    assert "ended before the reply was complete; the partial reply is kept" in captured.err
    second = scripted_server.requests[-1].body["messages"]
    assert [m["role"] for m in second] == ["user", "assistant", "user"] and second[1]["content"] == "Part"


def test_cli_prompt_reports_a_refused_connection(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    assert main(["chat", "--endpoint", url, "--prompt", "hi"]) == 1
    assert "connection was refused" in capsys.readouterr().err


def test_cli_option_checks(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["chat", "--model", "x", "--prompt", "hi"]) == 1
    assert "go with --endpoint" in capsys.readouterr().err
    assert main(["chat", "--prompt", "hi"]) == 1
    assert "--endpoint URL" in capsys.readouterr().err
    monkeypatch.delenv("NO_SUCH_KEY_VAR", raising=False)
    assert (
        main(["chat", "--endpoint", "http://h:1/v1", "--api-key-env", "NO_SUCH_KEY_VAR", "--prompt", "hi"])
        == 1
    )
    assert "NO_SUCH_KEY_VAR is not set" in capsys.readouterr().err
    assert main(["chat", "--endpoint", "nothing-saved", "--prompt", "hi"]) == 1
    assert "no saved endpoint called 'nothing-saved'" in capsys.readouterr().err


def test_cli_quantdesk_template_and_profile(
    scripted_server: ScriptedServer, capsys: pytest.CaptureFixture[str]
) -> None:
    def ok(record: Recorded, handler: BaseHTTPRequestHandler) -> None:
        start_sse(handler)
        sse(handler, {"choices": [{"index": 0, "text": "Hi!", "finish_reason": "stop"}]})
        sse(handler, "[DONE]")

    _serve(scripted_server, ok, models=("m",))
    argv = ["chat", "--endpoint", scripted_server.base_url, "--template", "ChatML", "--temperature", "0"]
    assert main([*argv, "--save-profile", "--system", "", "--prompt", "hello"]) == 0
    assert (
        scripted_server.requests[-1].body["prompt"]
        == "<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n"
    )
    # The saved profile (per server + model) brings the template back without --template.
    assert main(["chat", "--endpoint", scripted_server.base_url, "--prompt", "again"]) == 0
    body = scripted_server.requests[-1].body
    assert scripted_server.requests[-1].path == "/v1/completions" and body["temperature"] == 0
    assert "Hi!" in capsys.readouterr().out


def test_session_with_a_bad_endpoint_name() -> None:
    with pytest.raises(EndpointConfigError):
        Endpoint("", "http://h").checked()


def test_reply_end_carries_stats(scripted_server: ScriptedServer, connect: Any) -> None:
    def ok(record: Recorded, handler: BaseHTTPRequestHandler) -> None:
        start_sse(handler)
        for piece in ("a", "b", "c"):
            time.sleep(0.02)
            sse(handler, chat_chunk(piece))
        sse(handler, chat_chunk(None, finish="length"))
        sse(handler, "[DONE]")

    _serve(scripted_server, ok)
    session = ChatSession(
        connect(), template_choice(Endpoint("t", scripted_server.base_url)), settings=ChatSettings()
    )
    end = next(i for i in session.send("hi") if isinstance(i, ReplyEnd))
    assert end.stats.new_tokens == 3 and end.stats.stop_reason is StopReason.LENGTH
    assert 0.015 < end.stats.time_to_first_token < end.stats.seconds and end.stats.tokens_per_second > 0
    assert end.message.stop_reason == "length"


def test_cancel_before_the_server_answers_at_all(scripted_server: ScriptedServer, connect: Any) -> None:
    """Some servers send no headers until the first token: cancel must not wait for them."""
    _serve(scripted_server, lambda r, h: time.sleep(2.0))
    model = connect()
    cancel = threading.Event()
    threading.Timer(0.2, cancel.set).start()
    started = time.perf_counter()
    text, stats = _run(model, cancel)
    assert text == "" and stats.stop_reason is StopReason.CANCELLED
    assert time.perf_counter() - started < 1.0
    # The model is usable again right away.
    _serve(
        scripted_server,
        lambda r, h: send_json(h, 200, {"choices": [{"text": "ok", "finish_reason": "stop"}]}),
    )
    assert _run(model)[0] == "ok"


def test_a_key_the_server_echoes_is_scrubbed(scripted_server: ScriptedServer) -> None:
    key = "sk-echoed-secret-42"
    scripted_server.script = lambda r, h: send_json(h, 403, {"detail": f"key {key} may not use this model"})
    with pytest.raises(RemoteError) as caught:
        RemoteModel.connect(scripted_server.base_url, api_key=key)
    assert "may not use this model" in caught.value.message
    assert key not in caught.value.user_message + caught.value.detail + repr(caught.value)


def test_async_client_streams_and_reports_the_same_errors(scripted_server: ScriptedServer) -> None:
    """OpenAIClient (for code on an event loop) shares the reader with RemoteModel."""
    calls = {"n": 0}

    def replies(record: Recorded, handler: BaseHTTPRequestHandler) -> None:
        if record.method == "GET":
            return models_answer(handler, "m")
        calls["n"] += 1
        start_sse(handler)
        sse(handler, chat_chunk("Bon"))
        if calls["n"] == 1:
            sse(handler, chat_chunk("jour", finish="stop"))
            sse(handler, "[DONE]")
        # the second reply is cut here

    scripted_server.script = replies

    async def scenario() -> tuple[list[RemoteModelInfo], list[str | StreamEnd], StreamInterruptedError]:
        async with OpenAIClient(scripted_server.base_url, "k") as client:
            models = await client.list_models()
            items = [i async for i in client.stream_chat("m", [ChatMessage(Role.USER, "hi")], QUICK)]
            with pytest.raises(StreamInterruptedError) as caught:
                async for _ in client.stream_completion("m", "hi", QUICK):
                    pass
            return models, items, caught.value

    models, items, error = asyncio.run(scenario())
    assert [m.id for m in models] == ["m"]
    assert (
        items[:2] == ["Bon", "jour"] and isinstance(items[2], StreamEnd) and items[2].finish_reason == "stop"
    )
    assert error.partial_text == "Bon"
    assert scripted_server.requests[1].headers["Authorization"] == "Bearer k"
    assert scripted_server.requests[-1].body["prompt"] == "hi" and scripted_server.requests[-1].body["stream"]
