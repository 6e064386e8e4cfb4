"""Reading the wire format (the client's side): server-sent event streams, model lists, error bodies.

:class:`StreamState` turns the ``data:`` events of a streamed completion (or a whole JSON answer from a
server that ignored ``stream``) into text and one :class:`StreamEnd`; :func:`parse_models` reads
``GET /v1/models``; :func:`error_text` finds a server's own words in an error body of any common shape.
"""

from __future__ import annotations

import email.utils
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

import httpx2 as httpx

from app.errors import (
    EndpointNotCompatibleError,
    MalformedStreamError,
    RemoteServerError,
    StreamInterruptedError,
)

BODY_EXCERPT: Final = 300


@dataclass(frozen=True)
class RemoteModelInfo:
    """One entry of ``GET /v1/models``."""

    id: str
    context_length: int | None = None  # when the server states it (vLLM max_model_len, TabbyAPI, ...)
    owned_by: str | None = None


@dataclass(frozen=True)
class StreamEnd:
    """The last item of a reply stream: how the server ended it."""

    finish_reason: str | None  # "stop", "length", ...; None when the server sent none
    stop_string: str | None = None  # the stop string that ended it, when the server says (vLLM)
    prompt_tokens: int | None = None  # from ``usage``, when the server sends it
    completion_tokens: int | None = None
    chunks: int = 0  # chunks with text received (one token each on vLLM and llama.cpp)
    text: str = ""  # everything received, before stop-string matching


# -- URLs -------------------------------------------------------------------------------------------


def api_url(base_url: str, path: str) -> str:
    """``base_url`` + ``/v1`` + ``path``; a base URL that already ends in ``/v1`` is used as is."""
    base = base_url.rstrip("/")
    if not base.endswith("/v1"):
        base += "/v1"
    return base + "/" + path.lstrip("/")


def display_url(base_url: str) -> str:
    """The base URL without any ``user:password@`` part, for messages and saved chats."""
    parts = urlsplit(base_url)
    if parts.username is None and parts.password is None:
        return base_url.rstrip("/")
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment)).rstrip("/")


# -- errors -----------------------------------------------------------------------------------------


def error_text(response: httpx.Response) -> str:
    """The server's own words about an error: OpenAI/vLLM ``error.message``, FastAPI ``detail``, TGI
    ``error``, else the start of the body."""
    try:
        data: Any = response.json()
    except ValueError:
        return response.text[:BODY_EXCERPT].strip()
    for candidate in (
        data.get("error") if isinstance(data, dict) else None,
        data.get("detail") if isinstance(data, dict) else None,
        data.get("message") if isinstance(data, dict) else None,
    ):
        if isinstance(candidate, dict) and isinstance(candidate.get("message"), str):
            return str(candidate["message"])[:BODY_EXCERPT]
        if isinstance(candidate, str) and candidate:
            return candidate[:BODY_EXCERPT]
        if isinstance(candidate, list) and candidate:  # FastAPI validation errors
            return json.dumps(candidate)[:BODY_EXCERPT]
    return json.dumps(data)[:BODY_EXCERPT]


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """Retry-After as seconds: a number, or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def malformed_stream(base_url: str, what: str, partial: str, line: str = "") -> MalformedStreamError:
    kept = "; the partial reply is kept" if partial else ""
    return MalformedStreamError(
        f"The reply stream from {display_url(base_url)} could not be read ({what}){kept}.",
        "The server may not be OpenAI-compatible, or a proxy altered the stream; check the base URL.",
        partial_text=partial,
        detail=line[:BODY_EXCERPT],
    )


# -- reading replies (shared by the async client and the blocking stream) ---------------------------


def event_error(payload: str, base_url: str) -> RemoteServerError:
    try:
        data: Any = json.loads(payload)
    except ValueError:
        data = payload
    message = data
    if isinstance(data, dict):
        inner = data.get("error", data)
        message = inner.get("message", inner) if isinstance(inner, dict) else inner
    return RemoteServerError(
        f"The server at {display_url(base_url)} reported an error mid-reply: {str(message)[:BODY_EXCERPT]}.",
        "Check the server's log; the partial reply is kept.",
        detail=payload[:BODY_EXCERPT],
    )


@dataclass
class StreamState:
    """What one reply stream has delivered so far: fed SSE lines, it returns the text they add.

    Server-sent events: ``data:`` lines accumulate until a blank line ends the event; ``:`` lines are
    comments (keep-alive pings); an ``event: error`` is the server's error report; ``[DONE]`` ends the
    stream. A line that is no SSE field, or data that is no completion chunk, is a malformed stream.
    """

    base_url: str
    received: list[str] = field(default_factory=list)
    finish: str | None = None
    stop_string: str | None = None
    usage: dict[str, Any] = field(default_factory=dict)
    done: bool = False  # [DONE] seen, or a complete JSON answer read
    _data: list[str] = field(default_factory=list)
    _event: str = ""

    @property
    def text(self) -> str:
        """Everything received so far."""
        return "".join(self.received)

    def _bad(self, what: str, payload: str) -> MalformedStreamError:
        return malformed_stream(self.base_url, what, self.text, payload)

    def line(self, raw: str) -> str:
        """Feed one line of the event stream; returns the text it completes ("" for none)."""
        line = raw.rstrip("\r")
        if not line:
            return self.end_event()
        if line.startswith(":"):
            return ""  # a comment (keep-alive ping)
        name, sep, value = line.partition(":")
        if not sep:
            raise self._bad("a line that is not an SSE field", line)
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        # "id" and "retry" are valid and mean nothing here; SSE says to ignore unknown fields.
        return ""

    def end_event(self) -> str:
        """Dispatch the event read so far (at a blank line, or when the stream ends without one)."""
        if not self._data:
            self._event = ""
            return ""
        payload, event = "\n".join(self._data), self._event
        self._data, self._event = [], ""
        if event == "error":
            raise event_error(payload, self.base_url)
        return self.payload(payload)

    def payload(self, payload: str) -> str:
        """The text one event's data adds; raises for a malformed event or an error report."""
        if payload.strip() == "[DONE]":
            self.done = True
            return ""
        try:
            event: Any = json.loads(payload)
        except ValueError as exc:
            raise self._bad("an event that is not JSON", payload) from exc
        if not isinstance(event, dict):
            raise self._bad("an event that is not an object", payload)
        if "error" in event and not event.get("choices"):
            raise event_error(payload, self.base_url)
        if isinstance(event.get("usage"), dict):
            self.usage = event["usage"]
        choices = event.get("choices")
        if not isinstance(choices, list):
            if "usage" in event:
                return ""
            raise self._bad("an event without choices", payload)
        if not choices:
            return ""  # vLLM's final usage-only chunk
        choice = choices[0]
        if not isinstance(choice, dict):
            raise self._bad("a choice that is not an object", payload)
        if choice.get("finish_reason"):
            self.finish = str(choice["finish_reason"])
            reason = choice.get("stop_reason")
            self.stop_string = reason if isinstance(reason, str) and reason else None
        text = choice_text(choice)
        if text:
            self.received.append(text)
        return text

    def whole(self, response: httpx.Response) -> str:
        """The text of a complete JSON answer (a server that ignored ``stream``); the body must be read."""
        try:
            data: Any = response.json()
            choice = data["choices"][0]
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise malformed_stream(self.base_url, "a JSON answer without choices", "", response.text) from exc
        if isinstance(data.get("usage"), dict):
            self.usage = data["usage"]
        message = choice.get("message")
        text = message.get("content") if isinstance(message, dict) else choice.get("text")
        self.finish = str(choice.get("finish_reason") or "stop")
        self.done = True
        if isinstance(text, str) and text:
            self.received.append(text)
            return text
        return ""

    def end(self) -> StreamEnd:
        """The stream's end; raises StreamInterruptedError when it ended before the reply did."""
        if not self.done and self.finish is None:
            partial = self.text
            raise StreamInterruptedError(
                f"The reply stream from {display_url(self.base_url)} ended before the reply was complete"
                + ("; the partial reply is kept." if partial else "."),
                "Check that the server is still running, then regenerate or continue the reply.",
                partial_text=partial,
                detail="the stream closed without a finish reason or [DONE]",
            )
        return StreamEnd(
            finish_reason=self.finish,
            stop_string=self.stop_string,
            prompt_tokens=int_or_none(self.usage.get("prompt_tokens")),
            completion_tokens=int_or_none(self.usage.get("completion_tokens")),
            chunks=len(self.received),
            text=self.text,
        )


def choice_text(choice: Mapping[str, Any]) -> str:
    delta = choice.get("delta")
    if isinstance(delta, dict):  # chat completion chunk
        content = delta.get("content")
        return content if isinstance(content, str) else ""
    text = choice.get("text")  # completion chunk
    return text if isinstance(text, str) else ""


def int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def content_kind(response: httpx.Response, base_url: str) -> str:
    """ "sse" or "json" (a server that ignores ``stream``); anything else is a malformed answer."""
    ctype = response.headers.get("content-type", "").lower()
    if "text/event-stream" in ctype:
        return "sse"
    if "json" in ctype:
        return "json"
    raise malformed_stream(base_url, f"content type {ctype or 'none'}", "")


def model_info(item: Mapping[str, Any]) -> RemoteModelInfo | None:
    model_id = item.get("id")
    if not isinstance(model_id, str) or not model_id:
        return None
    context: Any = None
    for key in ("max_model_len", "context_length", "max_context_length", "max_seq_len", "n_ctx"):
        if isinstance(item.get(key), int):
            context = item[key]
            break
    params = item.get("parameters")
    if context is None and isinstance(params, dict) and isinstance(params.get("max_seq_len"), int):
        context = params["max_seq_len"]  # TabbyAPI
    owned = item.get("owned_by")
    return RemoteModelInfo(model_id, context if context and context > 0 else None, owned if owned else None)


def parse_models(response: httpx.Response, base_url: str) -> list[RemoteModelInfo]:
    """The model list of a successful (and read) ``GET /v1/models``."""
    try:
        data: Any = response.json()
    except ValueError as exc:
        raise EndpointNotCompatibleError(
            f"{display_url(base_url)} did not answer GET /v1/models with JSON.",
            "Check the base URL (usually http://host:port/v1).",
            detail=response.text[:BODY_EXCERPT],
        ) from exc
    items = data.get("data") if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise EndpointNotCompatibleError(
            f"{display_url(base_url)} answered GET /v1/models without a model list.",
            "Check the base URL (usually http://host:port/v1).",
            detail=json.dumps(data)[:BODY_EXCERPT],
        )
    found = [model_info(item) for item in items if isinstance(item, dict)]
    return [m for m in found if m is not None]
