"""The ``openai`` engine: a model served elsewhere through the OpenAI-compatible HTTP API.

vLLM, Text Generation Inference, TabbyAPI and llama.cpp's server all speak it. :class:`OpenAIClient` is
the async client (``GET /v1/models``, streaming ``POST /v1/chat/completions`` and ``/v1/completions``
read as server-sent events) for code on an event loop (``app.endpoints.check_connection``, the GUI).
:class:`RemoteModel` is a :class:`~app.backends.base.LoadedModel` over the same requests, so the chat
engine uses a remote model unchanged. Its ``generate()`` is synchronous (the engine and the GUI's worker
iterate it on a worker thread) and streams with httpx's blocking client on that thread: driving the
async client from a private event loop per token cost twice the client CPU, which on a machine that
also runs the server showed as ~5 % fewer tokens/s (``benchmarks/remote.py``). Cancel still closes the
stream at once from any thread: the reply's socket is shut down, even before the first byte arrives.
Both share one reader (:class:`_StreamState`), so both report the same typed errors.

Two template modes, chosen by the :class:`~app.chat.templates.PromptTemplate` the chat uses:

- **server**: :class:`ServerTemplate` packs the messages into the prompt (a private wire format, never
  shown to a model) and ``generate()`` unpacks them for ``/v1/chat/completions``: the server applies
  the model's own chat template.
- **quantdesk**: a QuantDesk template renders the prompt text and ``generate()`` sends it to
  ``/v1/completions``.

The server's tokenizer is not at hand, so :class:`RemoteTokenizer` estimates token counts (it splits text
a little finer than real BPE tokenizers do, so context budgets err on the safe side) and its ids decode
back to the exact text. The API key goes into the ``Authorization`` header only: never into a message,
a ``detail``, a repr or a log.
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import re
import socket
import threading
import time
from collections.abc import AsyncGenerator, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, cast
from urllib.parse import urlsplit, urlunsplit

import httpx2 as httpx

from app.backends.base import GenerationStats, Sampling, StopReason, Tokenizer
from app.chat.templates import ChatMessage, Role, Segment
from app.errors import (
    EndpointAuthError,
    EndpointNotCompatibleError,
    EndpointTimeoutError,
    EndpointUnreachableError,
    MalformedStreamError,
    PromptTooLongError,
    RateLimitedError,
    RemoteError,
    RemoteModelNotFoundError,
    RemoteRequestError,
    RemoteServerError,
    RemoteStreamError,
    StreamInterruptedError,
)
from app.stop_strings import StopStringMatcher

BACKEND_NAME: Final = "openai"
DISPLAY_NAME: Final = "OpenAI-compatible server"
# Used when neither the endpoint's settings nor the server's model list state a context length.
DEFAULT_CONTEXT: Final = 4096
# How long a finished reply's cancel watcher may linger (setting cancel wakes it at once).
_WATCH_EXIT_S: Final = 0.25
_BODY_EXCERPT: Final = 300


@dataclass(frozen=True)
class Timeouts:
    """Seconds to wait: to connect, between two reads (a big model may think long before the first
    token), to send the request."""

    connect: float = 10.0
    read: float = 300.0
    write: float = 30.0

    def httpx(self) -> httpx.Timeout:
        """The client's timeout object."""
        return httpx.Timeout(self.connect, connect=self.connect, read=self.read, write=self.write)


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


# -- request bodies ---------------------------------------------------------------------------------


def sampling_fields(
    sampling: Sampling, stop: Sequence[str] = (), *, extra: bool = True, max_tokens: int | None = None
) -> dict[str, Any]:
    """The request fields for ``sampling``.

    OpenAI's own fields (temperature, top_p, max_tokens, stop, seed) always; with ``extra``, top_k,
    min_p and the repetition penalty under both names servers use (vLLM/TabbyAPI ``repetition_penalty``,
    llama.cpp ``repeat_penalty``). They are sent even at neutral values: llama.cpp otherwise applies its
    own defaults (top_k 40, min_p 0.05, repeat_penalty 1.1). Temperature 0 is greedy on every server.
    """
    body: dict[str, Any] = {
        "temperature": max(0.0, sampling.temperature),
        "top_p": sampling.top_p if not sampling.greedy else 1.0,
        "max_tokens": max_tokens if max_tokens is not None else sampling.max_new_tokens,
    }
    stops = [s for s in dict.fromkeys(stop) if s]
    if stops:
        body["stop"] = stops
    if sampling.seed is not None:
        body["seed"] = sampling.seed
    if extra:
        body["top_k"] = sampling.top_k if not sampling.greedy else 1
        body["min_p"] = sampling.min_p
        body["repetition_penalty"] = sampling.repetition_penalty
        body["repeat_penalty"] = sampling.repetition_penalty
    return body


# -- server-side templates: the messages travel inside the prompt ------------------------------------

_WIRE_MARK: Final = "\ue000quantdesk-messages\ue001"


def pack_messages(messages: Sequence[ChatMessage], *, continue_final: bool = False) -> str:
    """The private wire format :class:`ServerTemplate` renders (JSON after a private-use marker)."""
    payload = {"continue": continue_final, "messages": [[m.role.value, m.content] for m in messages]}
    return _WIRE_MARK + json.dumps(payload, ensure_ascii=False, separators=(",", ":"))


def unpack_messages(text: str) -> tuple[list[ChatMessage], bool] | None:
    """The messages (and the continue flag) packed by :func:`pack_messages`; None for a plain prompt."""
    if not text.startswith(_WIRE_MARK):
        return None
    try:
        payload = json.loads(text[len(_WIRE_MARK) :])
        messages = [ChatMessage(Role(role), str(content)) for role, content in payload["messages"]]
        return messages, bool(payload.get("continue", False))
    except (ValueError, KeyError, TypeError) as exc:
        raise RemoteRequestError("The chat messages could not be prepared for the server.", "") from exc


class ServerTemplate:
    """The template of the **server** mode: the server applies the model's chat template.

    Renders the messages in a wire format that :class:`RemoteModel` turns back into the ``messages`` of
    ``/v1/chat/completions``. No default system prompt (the server's template has its own) and no stop
    strings (the server stops at the model's end-of-turn token).
    """

    name = "server"
    default_system: str | None = None
    stop_strings: tuple[str, ...] = ()
    builtin = False

    def render(
        self,
        messages: Sequence[ChatMessage],
        *,
        add_generation_prompt: bool = True,
        continue_final: bool = False,
    ) -> list[Segment]:
        """One text segment holding the messages (see :func:`pack_messages`)."""
        final_assistant = bool(messages) and messages[-1].role is Role.ASSISTANT
        return [pack_messages(messages, continue_final=continue_final and final_assistant)]


# -- the tokenizer stand-in -------------------------------------------------------------------------

# Letters in runs of up to 6, digits up to 3, every other character alone, each with one leading
# whitespace character; a whitespace character that precedes none of these stands alone. Finer than
# BPE for English (which averages ~4 characters a token), so estimates err towards more tokens.
_PIECE: Final = re.compile(r"\s?[A-Za-z]{1,6}|\s?\d{1,3}|\s?[^\sA-Za-z\d]|\s")
BOS_ID: Final = 0
EOS_ID: Final = 1


class RemoteTokenizer:
    """Token estimates for a model whose tokenizer lives on the server; ids decode to the exact text.

    Ids stand for text pieces interned on first sight, so ``decode(encode(t)) == t``. BOS/EOS are the
    Llama spellings ``<s>``/``</s>`` (the built-in templates that use them are Llama-family ones);
    servers read them in a prompt as the special tokens. No chat template: the server has it.
    """

    def __init__(self, bos_token: str | None = "<s>", eos_token: str | None = "</s>") -> None:
        self.bos_token = bos_token
        self.eos_token = eos_token
        self.bos_token_id: int | None = BOS_ID if bos_token else None
        self.eos_token_id: int | None = EOS_ID if eos_token else None
        self.chat_template: str | None = None
        self._pieces: list[str] = [bos_token or "", eos_token or ""]
        self._ids: dict[str, int] = {}
        self._lock = threading.Lock()

    def encode(self, text: str) -> list[int]:
        """Estimated tokens of ``text`` (no special tokens added)."""
        ids: list[int] = []
        with self._lock:
            for piece in _PIECE.findall(text):
                token = self._ids.get(piece)
                if token is None:
                    token = self._ids[piece] = len(self._pieces)
                    self._pieces.append(piece)
                ids.append(token)
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        """The text of ``ids``, BOS/EOS skipped."""
        return "".join(self._pieces[i] for i in ids if i > EOS_ID)

    def render(self, ids: Sequence[int]) -> str:
        """The text of ``ids`` with BOS/EOS spelled out (a prompt for ``/v1/completions``)."""
        return "".join(self._pieces[i] for i in ids)


# -- errors -----------------------------------------------------------------------------------------


def _error_text(response: httpx.Response) -> str:
    """The server's own words about an error: OpenAI/vLLM ``error.message``, FastAPI ``detail``, TGI
    ``error``, else the start of the body."""
    try:
        data: Any = response.json()
    except ValueError:
        return response.text[:_BODY_EXCERPT].strip()
    for candidate in (
        data.get("error") if isinstance(data, dict) else None,
        data.get("detail") if isinstance(data, dict) else None,
        data.get("message") if isinstance(data, dict) else None,
    ):
        if isinstance(candidate, dict) and isinstance(candidate.get("message"), str):
            return str(candidate["message"])[:_BODY_EXCERPT]
        if isinstance(candidate, str) and candidate:
            return candidate[:_BODY_EXCERPT]
        if isinstance(candidate, list) and candidate:  # FastAPI validation errors
            return json.dumps(candidate)[:_BODY_EXCERPT]
    return json.dumps(data)[:_BODY_EXCERPT]


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


def status_error(
    response: httpx.Response, *, base_url: str, model: str | None, api_key: str | None
) -> RemoteError:
    """The typed error for an HTTP error answer (the body must have been read). ``api_key`` is only
    scrubbed from what the server said (a server may echo it back)."""
    had_key = bool(api_key)
    status = response.status_code
    where = display_url(base_url)
    said = _error_text(response)
    if api_key:
        said = said.replace(api_key, "***")
    detail = f"HTTP {status} from {response.request.method} {response.request.url.path}: {said}"
    path = response.request.url.path
    if status == 401:
        if had_key:
            return EndpointAuthError(
                f"The server at {where} refused the API key (401).",
                "Check the key: set it in the endpoint's settings (kept in the OS keyring) or name the "
                "environment variable that holds it with --api-key-env.",
                status=401,
                detail=detail,
            )
        return EndpointAuthError(
            f"The server at {where} needs an API key (401).",
            "Give one in the endpoint's settings (kept in the OS keyring) or with --api-key-env VAR.",
            status=401,
            detail=detail,
        )
    if status == 403:
        return EndpointAuthError(
            f"The server at {where} refused access (403): {said or 'forbidden'}.",
            "Check that the API key may use this model.",
            status=403,
            detail=detail,
        )
    if status == 404:
        mentions_model = "model" in said.lower() or (model is not None and model in said)
        if model is not None and not path.endswith("/models") and mentions_model:
            return RemoteModelNotFoundError(
                f"The server at {where} does not serve a model called '{model}'.",
                "Pick one of the server's models (Test connection lists them) or use --model ID.",
                detail=detail,
            )
        return EndpointNotCompatibleError(
            f"{where} has no OpenAI-compatible route {path} (404).",
            "Check the base URL (usually http://host:port/v1). Servers without /v1/completions need the "
            "endpoint's template mode set to 'server'.",
            detail=detail,
        )
    if status == 429:
        wait = retry_after_seconds(response.headers.get("retry-after"))
        when = f"retry in {wait:.0f} s" if wait is not None else "retry in a moment"
        return RateLimitedError(
            f"The server at {where} is busy and asked to slow down (429).",
            f"Wait and {when}.",
            retry_after=wait,
            detail=detail,
        )
    if status >= 500:
        return RemoteServerError(
            f"The server at {where} failed ({status}){': ' + said if said else ''}.",
            "Check the server's log; try again when it has recovered.",
            status=status,
            detail=detail,
        )
    if status in (400, 413, 422):
        context_like = any(w in said.lower() for w in ("context", "token", "too long", "length"))
        return RemoteRequestError(
            f"The server at {where} rejected the request: {said or status}.",
            "Shorten the conversation, lower max new tokens or set the endpoint's context length."
            if context_like
            else "Check the endpoint's model id and template mode; a strict OpenAI server may refuse "
            "top_k/min_p/repetition_penalty (turn off extra sampler fields for it).",
            detail=detail,
        )
    return RemoteServerError(
        f"The server at {where} answered {status}{': ' + said if said else ''}.",
        "Check the endpoint's URL and the server's log.",
        status=status,
        detail=detail,
    )


def transport_error(exc: httpx.HTTPError, *, base_url: str, partial: str = "") -> RemoteError:
    """The typed error for a failure below HTTP (connect, timeout, a connection cut mid-reply)."""
    where = display_url(base_url)
    detail = f"{exc.__class__.__name__}: {exc}"
    if partial:
        why = "stalled" if isinstance(exc, httpx.TimeoutException) else "broke"
        return StreamInterruptedError(
            f"The connection to {where} {why} in the middle of the reply; the partial reply is kept.",
            "Check that the server is still running, then regenerate or continue the reply.",
            partial_text=partial,
            detail=detail,
        )
    if isinstance(exc, httpx.ConnectTimeout):
        return EndpointTimeoutError(
            f"Connecting to {where} timed out.",
            "Check the URL and that the server (or the network path to it) is up.",
            detail=detail,
        )
    if isinstance(exc, httpx.TimeoutException):
        return EndpointTimeoutError(
            f"The server at {where} did not answer in time.",
            "It may be overloaded or still loading the model; try again, or raise the read timeout.",
            detail=detail,
        )
    if isinstance(exc, httpx.ConnectError):
        return EndpointUnreachableError(
            f"Could not connect to {where}: {_connect_reason(exc)}.",
            "Check that the server is running and that the host and port are right.",
            detail=detail,
        )
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
        return EndpointNotCompatibleError(
            f"{where} is not a usable http(s) URL.", "Give a URL like http://host:8000/v1.", detail=detail
        )
    return StreamInterruptedError(
        f"The connection to {where} broke before the reply started.",
        "Check that the server is still running, then try again.",
        detail=detail,
    )


def _connect_reason(exc: httpx.ConnectError) -> str:
    seen: BaseException | None = exc
    for _ in range(10):  # the OS error sits a few causes down
        if seen is None:
            break
        if isinstance(seen, ConnectionRefusedError):
            return "the connection was refused"
        if isinstance(seen, socket.gaierror):
            return "the host name could not be resolved"
        seen = seen.__cause__ or seen.__context__
    text = str(exc).lower()
    if "refused" in text:
        return "the connection was refused"
    if "name or service" in text or "nodename" in text or "resolve" in text:
        return "the host name could not be resolved"
    return "the network path failed"


def _malformed(base_url: str, what: str, partial: str, line: str = "") -> MalformedStreamError:
    kept = "; the partial reply is kept" if partial else ""
    return MalformedStreamError(
        f"The reply stream from {display_url(base_url)} could not be read ({what}){kept}.",
        "The server may not be OpenAI-compatible, or a proxy altered the stream; check the base URL.",
        partial_text=partial,
        detail=line[:_BODY_EXCERPT],
    )


# -- reading replies (shared by the async client and the blocking stream) ---------------------------


def _event_error(payload: str, base_url: str) -> RemoteServerError:
    try:
        data: Any = json.loads(payload)
    except ValueError:
        data = payload
    message = data
    if isinstance(data, dict):
        inner = data.get("error", data)
        message = inner.get("message", inner) if isinstance(inner, dict) else inner
    return RemoteServerError(
        f"The server at {display_url(base_url)} reported an error mid-reply: {str(message)[:_BODY_EXCERPT]}.",
        "Check the server's log; the partial reply is kept.",
        detail=payload[:_BODY_EXCERPT],
    )


@dataclass
class _StreamState:
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

    def _malformed(self, what: str, payload: str) -> MalformedStreamError:
        return _malformed(self.base_url, what, self.text, payload)

    def line(self, raw: str) -> str:
        """Feed one line of the event stream; returns the text it completes ("" for none)."""
        line = raw.rstrip("\r")
        if not line:
            return self.end_event()
        if line.startswith(":"):
            return ""  # a comment (keep-alive ping)
        name, sep, value = line.partition(":")
        if not sep:
            raise self._malformed("a line that is not an SSE field", line)
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
            raise _event_error(payload, self.base_url)
        return self.payload(payload)

    def payload(self, payload: str) -> str:
        """The text one event's data adds; raises for a malformed event or an error report."""
        if payload.strip() == "[DONE]":
            self.done = True
            return ""
        try:
            event: Any = json.loads(payload)
        except ValueError as exc:
            raise self._malformed("an event that is not JSON", payload) from exc
        if not isinstance(event, dict):
            raise self._malformed("an event that is not an object", payload)
        if "error" in event and not event.get("choices"):
            raise _event_error(payload, self.base_url)
        if isinstance(event.get("usage"), dict):
            self.usage = event["usage"]
        choices = event.get("choices")
        if not isinstance(choices, list):
            if "usage" in event:
                return ""
            raise self._malformed("an event without choices", payload)
        if not choices:
            return ""  # vLLM's final usage-only chunk
        choice = choices[0]
        if not isinstance(choice, dict):
            raise self._malformed("a choice that is not an object", payload)
        if choice.get("finish_reason"):
            self.finish = str(choice["finish_reason"])
            reason = choice.get("stop_reason")
            self.stop_string = reason if isinstance(reason, str) and reason else None
        text = _choice_text(choice)
        if text:
            self.received.append(text)
        return text

    def whole(self, response: httpx.Response) -> str:
        """The text of a complete JSON answer (a server that ignored ``stream``); the body must be read."""
        try:
            data: Any = response.json()
            choice = data["choices"][0]
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise _malformed(self.base_url, "a JSON answer without choices", "", response.text) from exc
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
            prompt_tokens=_int_or_none(self.usage.get("prompt_tokens")),
            completion_tokens=_int_or_none(self.usage.get("completion_tokens")),
            chunks=len(self.received),
            text=self.text,
        )


def _choice_text(choice: Mapping[str, Any]) -> str:
    delta = choice.get("delta")
    if isinstance(delta, dict):  # chat completion chunk
        content = delta.get("content")
        return content if isinstance(content, str) else ""
    text = choice.get("text")  # completion chunk
    return text if isinstance(text, str) else ""


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _content_kind(response: httpx.Response, base_url: str) -> str:
    """ "sse" or "json" (a server that ignores ``stream``); anything else is a malformed answer."""
    ctype = response.headers.get("content-type", "").lower()
    if "text/event-stream" in ctype:
        return "sse"
    if "json" in ctype:
        return "json"
    raise _malformed(base_url, f"content type {ctype or 'none'}", "")


def _model_info(item: Mapping[str, Any]) -> RemoteModelInfo | None:
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


def _models(response: httpx.Response, base_url: str) -> list[RemoteModelInfo]:
    """The model list of a successful (and read) ``GET /v1/models``."""
    try:
        data: Any = response.json()
    except ValueError as exc:
        raise EndpointNotCompatibleError(
            f"{display_url(base_url)} did not answer GET /v1/models with JSON.",
            "Check the base URL (usually http://host:port/v1).",
            detail=response.text[:_BODY_EXCERPT],
        ) from exc
    items = data.get("data") if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise EndpointNotCompatibleError(
            f"{display_url(base_url)} answered GET /v1/models without a model list.",
            "Check the base URL (usually http://host:port/v1).",
            detail=json.dumps(data)[:_BODY_EXCERPT],
        )
    found = [_model_info(item) for item in items if isinstance(item, dict)]
    return [m for m in found if m is not None]


def chat_body(
    model: str,
    messages: Sequence[ChatMessage],
    sampling: Sampling,
    stop: Sequence[str] = (),
    *,
    extra_sampling: bool = True,
    continue_final: bool = False,
) -> dict[str, Any]:
    """The JSON body of a streaming ``/v1/chat/completions`` request."""
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": m.role.value, "content": m.content} for m in messages],
        "stream": True,
        "stream_options": {"include_usage": True},
        **sampling_fields(sampling, stop, extra=extra_sampling),
    }
    if continue_final:
        # vLLM continues the last assistant message with these; other servers ignore them.
        body["add_generation_prompt"] = False
        body["continue_final_message"] = True
    return body


def completion_body(
    model: str, prompt: str, sampling: Sampling, stop: Sequence[str] = (), *, extra_sampling: bool = True
) -> dict[str, Any]:
    """The JSON body of a streaming ``/v1/completions`` request."""
    return {
        "model": model,
        "prompt": prompt,
        "stream": True,
        "stream_options": {"include_usage": True},
        **sampling_fields(sampling, stop, extra=extra_sampling),
    }


def _headers(api_key: str | None) -> dict[str, str]:
    headers = {"Accept": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    return headers


# -- the async client -------------------------------------------------------------------------------


class OpenAIClient:
    """Async client for one OpenAI-compatible server.

    Use it from one event loop (``async with``, or :meth:`aclose` at the end). ``transport`` replaces
    the network layer (tests record requests with it).
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeouts: Timeouts | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        extra_sampling: bool = True,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.extra_sampling = extra_sampling
        self._has_key = bool(api_key)
        self._api_key = api_key  # for the Authorization header, and to scrub it from error texts
        self._client = httpx.AsyncClient(
            timeout=(timeouts or Timeouts()).httpx(), headers=_headers(api_key), transport=transport
        )

    def __repr__(self) -> str:
        return f"OpenAIClient({display_url(self.base_url)!r}, key={'set' if self._has_key else 'none'})"

    async def __aenter__(self) -> OpenAIClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connections."""
        await self._client.aclose()

    def url(self, path: str) -> str:
        """The full URL of an API path such as ``models``."""
        return api_url(self.base_url, path)

    async def list_models(self) -> list[RemoteModelInfo]:
        """``GET /v1/models``."""
        try:
            response = await self._client.get(self.url("models"))
        except httpx.HTTPError as exc:
            raise transport_error(exc, base_url=self.base_url) from exc
        if response.status_code >= 400:
            raise status_error(response, base_url=self.base_url, model=None, api_key=self._api_key)
        return _models(response, self.base_url)

    def stream_chat(
        self,
        model: str,
        messages: Sequence[ChatMessage],
        sampling: Sampling,
        stop: Sequence[str] = (),
        *,
        continue_final: bool = False,
    ) -> AsyncGenerator[str | StreamEnd, None]:
        """Stream a chat completion: text chunks, then one :class:`StreamEnd`."""
        body = chat_body(
            model, messages, sampling, stop, extra_sampling=self.extra_sampling, continue_final=continue_final
        )
        return self.stream("chat/completions", body)

    def stream_completion(
        self, model: str, prompt: str, sampling: Sampling, stop: Sequence[str] = ()
    ) -> AsyncGenerator[str | StreamEnd, None]:
        """Stream a raw completion of ``prompt``: text chunks, then one :class:`StreamEnd`."""
        body = completion_body(model, prompt, sampling, stop, extra_sampling=self.extra_sampling)
        return self.stream("completions", body)

    async def stream(self, path: str, body: Mapping[str, Any]) -> AsyncGenerator[str | StreamEnd, None]:
        """POST ``body`` to ``path`` and stream the reply's text, then one :class:`StreamEnd`.

        Raises a typed :class:`~app.errors.RemoteError`; a failure after text arrived is a
        :class:`~app.errors.RemoteStreamError` carrying that text. Closing the generator (or
        cancelling the task that runs it) closes the HTTP stream.
        """
        model = body.get("model")
        state = _StreamState(self.base_url)
        try:
            async with self._client.stream("POST", self.url(path), json=dict(body)) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise status_error(
                        response,
                        base_url=self.base_url,
                        model=model if isinstance(model, str) else None,
                        api_key=self._api_key,
                    )
                if _content_kind(response, self.base_url) == "json":
                    await response.aread()
                    text = state.whole(response)
                    if text:
                        yield text
                else:
                    # aiter_lines is an async generator: close it here, not in the garbage collector.
                    lines = cast(AsyncGenerator[str, None], response.aiter_lines())
                    async with contextlib.aclosing(lines):
                        async for raw in lines:
                            text = state.line(raw)
                            if text:
                                yield text
                            if state.done:
                                break
                        else:
                            text = state.end_event()  # a last event without its blank line
                            if text:
                                yield text
        except httpx.HTTPError as exc:
            raise transport_error(exc, base_url=self.base_url, partial=state.text) from exc
        yield state.end()


# -- the LoadedModel over HTTP ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Request:
    path: str
    body: dict[str, Any]
    prompt_tokens: int  # QuantDesk's estimate, for when the server reports none


class _StreamCutter:
    """Closes a blocking HTTP stream from another thread the moment ``cancel`` is set.

    httpcore's trace hook hands over each new connection's socket (one connection per reply, so it is
    known before the server sends a byte); a watcher thread sleeps on the cancel event and shuts the
    socket down, which ends a blocked read at once. The reading thread then sees a closed stream.
    """

    def __init__(self, cancel: threading.Event) -> None:
        self.cancel = cancel
        self.finished = threading.Event()
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()

    def trace(self, name: str, info: Mapping[str, Any]) -> None:
        """httpcore's ``trace`` extension: remember the connection's socket (TCP, then TLS)."""
        if name in ("connection.connect_tcp.complete", "connection.start_tls.complete"):
            stream = info.get("return_value")
            sock = stream.get_extra_info("socket") if stream is not None else None
            with self._lock:
                self._sock = sock if isinstance(sock, socket.socket) else None
            if self.cancel.is_set():
                self.cut()

    def watch(self) -> None:
        """Thread body: wait for cancel (no polling while it stays unset) or for the reply's end."""
        while not self.finished.is_set():
            if self.cancel.wait(_WATCH_EXIT_S):
                self.cut()
                return

    def cut(self) -> None:
        """Shut the socket down: a read blocked on it returns at once."""
        with self._lock:
            sock = self._sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class RemoteModel:
    """A model on an OpenAI-compatible server, usable wherever a :class:`LoadedModel` is.

    ``generate()`` is synchronous: the chat engine and the GUI's worker iterate it on a worker thread.
    It streams with httpx's blocking client on that thread (the async client's per-token overhead cost
    measurable throughput when the server shares the CPU; see ``benchmarks/remote.py``), one
    connection per reply so that cancel can cut it at once from any thread. One generation at a time.
    """

    backend = BACKEND_NAME

    def __init__(
        self,
        base_url: str,
        model_id: str,
        *,
        api_key: str | None = None,
        context_length: int = DEFAULT_CONTEXT,
        timeouts: Timeouts | None = None,
        transport: httpx.BaseTransport | None = None,
        extra_sampling: bool = True,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model_id = model_id
        self.model_dir = Path()  # nothing on disk: the model lives on the server
        self._tokenizer = RemoteTokenizer()
        self.tokenizer: Tokenizer = self._tokenizer
        self.context_length = context_length
        self.memory_bytes = 0  # on this machine
        self.load_seconds = 0.0  # time to connect and check the model
        self.extra_sampling = extra_sampling
        self._has_key = bool(api_key)
        self._api_key = api_key  # for the Authorization header, and to scrub it from error texts
        self._http = httpx.Client(
            timeout=(timeouts or Timeouts()).httpx(),
            headers=_headers(api_key),
            transport=transport,
            limits=httpx.Limits(max_keepalive_connections=0),  # a fresh connection per reply
        )
        self._busy = threading.Lock()
        self._closed = False

    def __repr__(self) -> str:
        return f"RemoteModel({display_url(self.base_url)!r}, {self.model_id!r})"

    @classmethod
    def connect(
        cls,
        base_url: str,
        model_id: str | None = None,
        *,
        api_key: str | None = None,
        context_length: int | None = None,
        timeouts: Timeouts | None = None,
        transport: httpx.BaseTransport | None = None,
        extra_sampling: bool = True,
    ) -> RemoteModel:
        """Connect and check the model: ``GET /v1/models`` must list ``model_id`` (or, without one,
        exactly one model, which is then used). Raises a typed RemoteError.

        A server without a model list (404) is accepted when ``model_id`` is given.
        """
        started = time.perf_counter()
        model = cls(
            base_url,
            model_id or "",
            api_key=api_key,
            context_length=context_length or DEFAULT_CONTEXT,
            timeouts=timeouts,
            transport=transport,
            extra_sampling=extra_sampling,
        )
        try:
            try:
                models = model.list_models()
            except EndpointNotCompatibleError:
                if not model_id:
                    raise
                models = []
            if models:
                chosen = choose_model(models, model_id, base_url)
                model.model_id = chosen.id
                if context_length is None and chosen.context_length:
                    model.context_length = chosen.context_length
        except BaseException:
            model.unload()
            raise
        model.load_seconds = time.perf_counter() - started
        return model

    def _check_open(self) -> None:
        if self._closed:
            raise RemoteError("This remote model was closed.", "Connect to the endpoint again.")

    def list_models(self) -> list[RemoteModelInfo]:
        """``GET /v1/models`` (blocking)."""
        self._check_open()
        try:
            response = self._http.get(api_url(self.base_url, "models"))
        except httpx.HTTPError as exc:
            raise transport_error(exc, base_url=self.base_url) from exc
        if response.status_code >= 400:
            raise status_error(response, base_url=self.base_url, model=None, api_key=self._api_key)
        return _models(response, self.base_url)

    def _request(self, prompt: str | Sequence[int], sampling: Sampling, stop: Sequence[str]) -> _Request:
        if isinstance(prompt, str):
            text, estimate = prompt, len(self._tokenizer.encode(prompt))
        else:
            ids = list(prompt)
            if ids and ids[0] == BOS_ID:
                ids = ids[1:]  # servers add the model's BOS themselves
            text, estimate = self._tokenizer.render(ids), len(ids)
        unpacked = unpack_messages(text)
        extra = self.extra_sampling
        if unpacked is None:
            if not text:
                raise PromptTooLongError("The prompt is empty.", "Type something to send.")
            body = completion_body(self.model_id, text, sampling, stop, extra_sampling=extra)
            return _Request("completions", body, estimate)
        messages, continue_final = unpacked
        # The server's template adds a few tokens around each message's text.
        estimate = sum(len(self._tokenizer.encode(m.content)) + 4 for m in messages)
        body = chat_body(
            self.model_id, messages, sampling, stop, extra_sampling=extra, continue_final=continue_final
        )
        return _Request("chat/completions", body, estimate)

    def generate(
        self, prompt: str | Sequence[int], sampling: Sampling, stop: Sequence[str], cancel: threading.Event
    ) -> Iterator[str | GenerationStats]:
        """Yield text chunks, then one GenerationStats; stop strings are never yielded.

        A prompt packed by :class:`ServerTemplate` goes to ``/v1/chat/completions``, any other to
        ``/v1/completions``. Setting ``cancel`` (from any thread) closes the HTTP stream at once, even
        while waiting for the server. Errors are typed (:mod:`app.errors`); a stream cut mid-reply
        raises :class:`~app.errors.StreamInterruptedError` after the text that did arrive was yielded.
        """
        self._check_open()
        stops = tuple(stop)
        return self._generate(self._request(prompt, sampling, stops), stops, cancel)

    def _generate(
        self, request: _Request, stop: tuple[str, ...], cancel: threading.Event
    ) -> Iterator[str | GenerationStats]:
        if not self._busy.acquire(blocking=False):
            raise RemoteError("A reply from this server is still streaming.", "Stop it or wait for it.")
        started = time.perf_counter()
        first_at = 0.0
        chunks = 0
        emitted: list[str] = []
        matcher = StopStringMatcher(stop)
        stop_hit: str | None = None
        end: StreamEnd | None = None
        reason: StopReason | None = None
        cutter = _StreamCutter(cancel)
        threading.Thread(target=cutter.watch, name="remote-stream-cancel", daemon=True).start()
        stream = self._stream(request, cutter)
        try:
            try:
                for item in stream:
                    if cancel.is_set():
                        reason = StopReason.CANCELLED
                        break
                    if isinstance(item, StreamEnd):
                        end = item
                        break
                    chunks += 1
                    if chunks == 1:
                        first_at = time.perf_counter() - started
                    fed = matcher.feed(item)
                    if fed.text:
                        emitted.append(fed.text)
                        yield fed.text
                    if fed.stop is not None:
                        stop_hit = fed.stop
                        reason = StopReason.STOP_STRING
                        break
                else:
                    if cancel.is_set():
                        reason = StopReason.CANCELLED
            except RemoteError as exc:
                if not cancel.is_set():
                    if isinstance(exc, RemoteStreamError):
                        exc.partial_text = "".join(emitted)
                    raise
                reason = StopReason.CANCELLED  # our own cut ended the stream
        finally:
            cutter.finished.set()
            stream.close()  # leaves the ``with``: the connection closes now
            self._busy.release()
        if reason is None:
            tail = matcher.flush()
            if tail:
                yield tail
            reason = _stop_reason(end)
        if end is not None and end.stop_string and reason is StopReason.EOS:
            reason, stop_hit = StopReason.STOP_STRING, end.stop_string
        counted = end.completion_tokens if end is not None and end.completion_tokens is not None else chunks
        prompt_tokens = end.prompt_tokens if end is not None and end.prompt_tokens is not None else None
        yield GenerationStats(
            prompt_tokens=prompt_tokens if prompt_tokens is not None else request.prompt_tokens,
            new_tokens=counted,
            seconds=time.perf_counter() - started,
            time_to_first_token=first_at,
            stop_reason=reason,
            stop_string=stop_hit,
        )

    def _stream(self, request: _Request, cutter: _StreamCutter) -> Generator[str | StreamEnd, None, None]:
        """The blocking twin of :meth:`OpenAIClient.stream`."""
        state = _StreamState(self.base_url)
        url = api_url(self.base_url, request.path)
        try:
            with self._http.stream(
                "POST", url, json=request.body, extensions={"trace": cutter.trace}
            ) as response:
                if response.status_code >= 400:
                    response.read()
                    raise status_error(
                        response, base_url=self.base_url, model=self.model_id or None, api_key=self._api_key
                    )
                if _content_kind(response, self.base_url) == "json":
                    response.read()
                    text = state.whole(response)
                    if text:
                        yield text
                else:
                    for raw in response.iter_lines():
                        text = state.line(raw)
                        if text:
                            yield text
                        if state.done:
                            break
                    else:
                        text = state.end_event()  # a last event without its blank line
                        if text:
                            yield text
        except httpx.HTTPError as exc:
            raise transport_error(exc, base_url=self.base_url, partial=state.text) from exc
        yield state.end()

    def unload(self) -> None:
        """Close the connections (nothing is loaded on this machine)."""
        if not self._closed:
            self._closed = True
            self._http.close()


def _stop_reason(end: StreamEnd | None) -> StopReason:
    if end is None:
        return StopReason.EOS
    if end.finish_reason == "length":
        return StopReason.LENGTH
    return StopReason.EOS


def choose_model(models: Sequence[RemoteModelInfo], model_id: str | None, base_url: str) -> RemoteModelInfo:
    """The served model to use: ``model_id`` (exact, else case-insensitive), or the only one served."""
    available = tuple(m.id for m in models)
    where = display_url(base_url)
    if not models:
        raise RemoteModelNotFoundError(
            f"The server at {where} lists no models.",
            "Check that it finished loading its model.",
            available=available,
        )
    if not model_id:
        if len(models) == 1:
            return models[0]
        raise RemoteModelNotFoundError(
            f"The server at {where} serves {len(models)} models; choose one.",
            "Models: " + ", ".join(available) + ". Use --model ID or set it in the endpoint.",
            available=available,
        )
    for m in models:
        if m.id == model_id:
            return m
    folded = [m for m in models if m.id.lower() == model_id.lower()]
    if len(folded) == 1:
        return folded[0]
    shown = ", ".join(available[:10]) + (f" and {len(available) - 10} more" if len(available) > 10 else "")
    raise RemoteModelNotFoundError(
        f"The server at {where} does not serve a model called '{model_id}'.",
        f"It serves: {shown}.",
        available=available,
    )
