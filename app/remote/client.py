"""The async client of an OpenAI-compatible server, and the typed errors both clients raise.

:class:`OpenAIClient` (``GET /v1/models``, streaming ``POST /v1/chat/completions`` and ``/v1/completions``)
is for code on an event loop (:func:`app.remote.endpoints.check_connection`, the GUI);
:class:`~app.remote.engine.RemoteModel` is the blocking twin the chat engine drives. Both read answers with
:mod:`app.remote.wire` and map failures with :func:`status_error`/:func:`transport_error`, so both report
the same typed errors. The API key goes into the ``Authorization`` header only: never into a message, a
``detail``, a repr or a log.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import httpx2 as httpx

from app.backends.base import Sampling
from app.chat.templates import ChatMessage
from app.errors import (
    EndpointAuthError,
    EndpointNotCompatibleError,
    EndpointTimeoutError,
    EndpointUnreachableError,
    RateLimitedError,
    RemoteError,
    RemoteModelNotFoundError,
    RemoteRequestError,
    RemoteServerError,
    StreamInterruptedError,
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
    error_text,
    parse_models,
    retry_after_seconds,
)


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


def status_error(
    response: httpx.Response, *, base_url: str, model: str | None, api_key: str | None
) -> RemoteError:
    """The typed error for an HTTP error answer (the body must have been read). ``api_key`` is only
    scrubbed from what the server said (a server may echo it back)."""
    had_key = bool(api_key)
    status = response.status_code
    where = display_url(base_url)
    said = error_text(response)
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
            timeout=(timeouts or Timeouts()).httpx(), headers=auth_headers(api_key), transport=transport
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
        return parse_models(response, self.base_url)

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
        state = StreamState(self.base_url)
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
                if content_kind(response, self.base_url) == "json":
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
