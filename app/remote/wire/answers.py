"""Answers in the wire format: what QuantDesk's server writes (and :mod:`.reading` reads back).

Objects exactly as OpenAI's API reference defines them: ``chat.completion`` and its
``chat.completion.chunk`` stream, ``text_completion`` (the same name for its chunks), the usage object,
the model list and the error object; :func:`sse_event` frames one object as a server-sent event.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any, Final

from app.backends.base import StopReason
from app.remote.wire.reading import RemoteModelInfo

SSE_DONE: Final = b"data: [DONE]\n\n"
OWNED_BY: Final = "quantdesk"


class Kind(StrEnum):
    """The two completion routes; the value is the route under ``/v1``."""

    CHAT = "chat/completions"
    TEXT = "completions"


# OpenAI's finish_reason: "stop" for a natural end or a stop sequence, "length" for max_tokens or the
# context. A cancelled reply has no reader left; "stop" keeps the object valid if anyone logs it.
FINISH_REASONS: Final[Mapping[StopReason, str]] = {
    StopReason.EOS: "stop",
    StopReason.STOP_STRING: "stop",
    StopReason.LENGTH: "length",
    StopReason.CANCELLED: "stop",
}

_OBJECT: Final[Mapping[Kind, tuple[str, str]]] = {  # (whole answer, stream chunk)
    Kind.CHAT: ("chat.completion", "chat.completion.chunk"),
    Kind.TEXT: ("text_completion", "text_completion"),
}


def usage_object(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    """The ``usage`` object: tokens of the prompt, of the reply, and their sum."""
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def _choice(kind: Kind, text: str | None, finish: str | None, *, chunk: bool, first: bool) -> dict[str, Any]:
    choice: dict[str, Any] = {"index": 0}
    if kind is Kind.TEXT:
        choice["text"] = text or ""
    elif chunk:
        delta: dict[str, Any] = {"role": "assistant"} if first else {}
        if text is not None:
            delta["content"] = text
        choice["delta"] = delta
    else:
        choice["message"] = {"role": "assistant", "content": text or ""}
    choice["logprobs"] = None
    choice["finish_reason"] = finish
    return choice


def completion_object(
    kind: Kind,
    *,
    id: str,
    created: int,
    model: str,
    text: str,
    finish_reason: str,
    usage: Mapping[str, int],
) -> dict[str, Any]:
    """A whole (not streamed) answer."""
    return {
        "id": id,
        "object": _OBJECT[kind][0],
        "created": created,
        "model": model,
        "choices": [_choice(kind, text, finish_reason, chunk=False, first=False)],
        "usage": dict(usage),
    }


def chunk_object(
    kind: Kind,
    *,
    id: str,
    created: int,
    model: str,
    text: str | None = None,
    finish_reason: str | None = None,
    first: bool = False,
    usage: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """One streamed chunk; with ``usage`` it is the final usage-only chunk (no choices), as OpenAI sends
    it when ``stream_options.include_usage`` is set. ``first`` adds the assistant role to a chat delta."""
    chunk: dict[str, Any] = {"id": id, "object": _OBJECT[kind][1], "created": created, "model": model}
    if usage is not None:
        chunk["choices"] = []
        chunk["usage"] = dict(usage)
    else:
        chunk["choices"] = [_choice(kind, text, finish_reason, chunk=True, first=first)]
    return chunk


def models_object(models: Sequence[RemoteModelInfo], created: int) -> dict[str, Any]:
    """``GET /v1/models``; ``context_length`` is read back by :func:`.reading.model_info`."""
    data: list[dict[str, Any]] = []
    for m in models:
        item: dict[str, Any] = {
            "id": m.id,
            "object": "model",
            "created": created,
            "owned_by": m.owned_by or OWNED_BY,
        }
        if m.context_length:
            item["context_length"] = m.context_length
        data.append(item)
    return {"object": "list", "data": data}


def error_object(
    message: str, type: str, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    """OpenAI's error body: ``{"error": {"message", "type", "param", "code"}}``."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def sse_event(obj: Mapping[str, Any]) -> bytes:
    """One server-sent event carrying ``obj`` as compact JSON."""
    return b"data: " + json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"
