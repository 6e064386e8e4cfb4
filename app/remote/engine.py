"""The ``openai`` engine: a model served elsewhere through the OpenAI-compatible HTTP API.

vLLM, Text Generation Inference, TabbyAPI, llama.cpp's server and QuantDesk's own (``quantdesk serve``)
all speak it. :class:`RemoteModel` is a :class:`~app.backends.base.LoadedModel` over its requests, so the
chat engine uses a remote model unchanged. Its ``generate()`` is synchronous (the engine and the GUI's
worker iterate it on a worker thread) and streams with httpx's blocking client on that thread: driving the
async client (:mod:`app.remote.client`) from a private event loop per token cost twice the client CPU,
which on a machine that also runs the server showed as ~5 % fewer tokens/s (``benchmarks/remote.py``).
Cancel still closes the stream at once from any thread: the reply's socket is shut down, even before the
first byte arrives. Both clients read answers with :class:`~app.remote.wire.StreamState`.

Two template modes, chosen by the :class:`~app.chat.templates.PromptTemplate` the chat uses:

- **server**: :class:`~app.remote.prompting.ServerTemplate` packs the messages into the prompt (a
  private wire format, never shown to a model) and ``generate()`` unpacks them for
  ``/v1/chat/completions``: the server applies the model's own chat template.
- **quantdesk**: a QuantDesk template renders the prompt text and ``generate()`` sends it to
  ``/v1/completions``.

The server's tokenizer is not at hand, so :class:`~app.remote.prompting.RemoteTokenizer` estimates
token counts (context budgets err on the safe side) and its ids decode back to the exact text. The API
key goes into the ``Authorization`` header only.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import httpx2 as httpx

from app.backends.base import GenerationStats, Sampling, StopReason, Tokenizer
from app.errors import (
    EndpointNotCompatibleError,
    PromptTooLongError,
    RemoteError,
    RemoteModelNotFoundError,
    RemoteStreamError,
)
from app.remote.client import Timeouts, status_error, transport_error
from app.remote.prompting import (
    BOS_ID,
    RemoteTokenizer,
    unpack_messages,
)
from app.remote.wire import (
    RemoteModelInfo,
    StreamEnd,
    StreamState,
    api_url,
    auth_headers,
    chat_body,
    completion_body,
    content_kind,
    display_url,
    parse_models,
)
from app.stop_strings import StopStringMatcher

BACKEND_NAME: Final = "openai"
DISPLAY_NAME: Final = "OpenAI-compatible server"
# Used when neither the endpoint's settings nor the server's model list state a context length.
DEFAULT_CONTEXT: Final = 4096
# How long a finished reply's cancel watcher may linger (setting cancel wakes it at once).
_WATCH_EXIT_S: Final = 0.25


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
            headers=auth_headers(api_key),
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
        return parse_models(response, self.base_url)

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
        state = StreamState(self.base_url)
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
                if content_kind(response, self.base_url) == "json":
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
