"""The wire format: what the server writes, the remote engine reads back; bad requests are refused."""

from __future__ import annotations

import pytest

from app.backends.base import Sampling
from app.chat.templates import Role
from app.remote.wire import (
    Kind,
    StreamState,
    WireError,
    chunk_object,
    completion_object,
    parse_chat_request,
    parse_completion_request,
    sse_event,
    usage_object,
)


def _read(events: list[bytes]) -> StreamState:
    state = StreamState("http://127.0.0.1:1/v1")
    for line in b"".join(events).decode().split("\n"):
        state.line(line)
    return state


@pytest.mark.parametrize("kind", list(Kind))
def test_a_stream_the_server_writes_reads_back_as_text_finish_and_usage(kind: Kind) -> None:
    meta = {"id": "x", "created": 1, "model": "m"}
    events = [
        sse_event(chunk_object(kind, **meta, text=t, first=i == 0)) for i, t in enumerate(["Hel", "lo"])
    ]
    events.append(sse_event(chunk_object(kind, **meta, finish_reason="length")))
    events.append(sse_event(chunk_object(kind, **meta, usage=usage_object(7, 2))))
    events.append(b"data: [DONE]\n\n")
    end = _read(events).end()
    assert (end.text, end.finish_reason, end.prompt_tokens, end.completion_tokens) == (
        "Hello",
        "length",
        7,
        2,
    )


def test_a_whole_chat_answer_has_openais_fields() -> None:
    body = completion_object(
        Kind.CHAT, id="c", created=1, model="m", text="Hi", finish_reason="stop", usage=usage_object(3, 1)
    )
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "Hi"}
    assert body["usage"] == {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}


def test_request_fields_override_only_what_they_name() -> None:
    request = parse_chat_request(
        {
            "model": "m",
            "messages": [{"role": "developer", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
            "temperature": 0,
            "max_tokens": 5,
            "stop": "###",
            "frequency_penalty": 0.5,
        }
    )
    defaults = Sampling(temperature=0.7, top_p=0.8, max_new_tokens=512)
    applied = request.sampling.apply(defaults)
    assert (applied.temperature, applied.top_p, applied.max_new_tokens) == (0.0, 0.8, 5)
    assert request.sampling.stop == ("###",)
    assert [m.role for m in request.messages] == [Role.SYSTEM, Role.USER]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "m", "messages": []}, "messages"),
        ({"model": "m", "messages": [{"role": "tool", "content": "x"}]}, "messages"),
        ({"model": "m", "messages": [{"role": "user", "content": "x"}], "n": 2}, "n"),
        ({"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": 9}, "temperature"),
        ({"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 0}, "max_tokens"),
        ({"messages": [{"role": "user", "content": "x"}]}, "model"),
    ],
)
def test_unusable_chat_requests_are_refused_with_the_field_named(body: dict[str, object], param: str) -> None:
    with pytest.raises(WireError) as refused:
        parse_chat_request(body)
    assert (refused.value.status, refused.value.param) == (400, param)


def test_a_completion_takes_one_prompt() -> None:
    assert parse_completion_request({"model": "m", "prompt": ["Once"]}).prompt == "Once"
    with pytest.raises(WireError):
        parse_completion_request({"model": "m", "prompt": ["a", "b"]})
