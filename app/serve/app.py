"""The ASGI app of ``quantdesk serve``: OpenAI's ``/v1/models``, ``/v1/chat/completions`` and
``/v1/completions`` over one :class:`~app.serve.service.ServedModel`.

Starlette, not FastAPI: the request and answer shapes are :mod:`app.remote.wire`'s (shared with the
remote engine), so FastAPI's pydantic models would be a second, competing definition, and its
validation errors (422 ``detail`` lists) are not OpenAI's error shape. Starlette gives routing, streaming
responses and client-disconnect detection on the same ASGI stack (uvicorn) vLLM and llama-cpp-python's
server run on.

Every error is OpenAI's JSON error object with the status OpenAI uses: 400 a bad request or a prompt too
long (with the numbers), 401 a missing or wrong key, 404 an unknown model or route, 429 a full queue
(with Retry-After), 503 while the model loads (with Retry-After). A client that disconnects cancels its
generation before the next token.
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import json
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Mapping
from typing import Any, Final

from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive

from app.backends.base import GenerationStats, StopReason
from app.errors import ModelBusyError, QuantDeskError
from app.remote.wire import (
    FINISH_REASONS,
    PARSERS,
    SSE_DONE,
    ChatRequest,
    CompletionRequest,
    Kind,
    RemoteModelInfo,
    WireError,
    chunk_object,
    completion_object,
    error_object,
    models_object,
    sse_event,
    usage_object,
)
from app.serve.gate import ModelGate, Owner
from app.serve.service import END, GenerationJob, JobRecord, PromptTooLong, ServedModel

_LOADING_RETRY_S: Final = 5
_RECORDS_KEPT: Final = 200


class ServeState:
    """What the server serves and how it is doing; shared by the app, the runner and the GUI."""

    def __init__(self, model_id: str, gate: ModelGate | None = None, api_key: str | None = None) -> None:
        self.model_id = model_id
        self.gate = gate or ModelGate()
        self._api_key = api_key  # compared in constant time; never logged, never in a repr
        self.served: ServedModel | None = None
        self.load_error: str | None = None
        self.created = int(time.time())
        self.records: deque[JobRecord] = deque(maxlen=_RECORDS_KEPT)
        self._numbers = itertools.count(1)
        self.jobs: set[GenerationJob] = set()

    def __repr__(self) -> str:
        return f"ServeState({self.model_id!r}, key={'set' if self._api_key else 'none'})"

    @property
    def requires_key(self) -> bool:
        """Whether requests must carry the API key."""
        return bool(self._api_key)

    def key_matches(self, given: str) -> bool:
        """Whether ``given`` is the API key (constant-time comparison)."""
        return self._api_key is not None and hmac.compare_digest(given.encode(), self._api_key.encode())

    def set_loaded(self, served: ServedModel) -> None:
        """The model is ready: completions are answered from now on."""
        self.served = served

    def next_record(self, prompt_tokens: int) -> JobRecord:
        """A new record, kept in :attr:`records`."""
        record = JobRecord(next(self._numbers), prompt_tokens)
        self.records.append(record)
        return record

    def cancel_all(self) -> None:
        """Stop every generation (the server is stopping)."""
        for job in list(self.jobs):
            job.disconnect()


def _error(exc: WireError) -> JSONResponse:
    body = error_object(exc.message, exc.type, exc.param, exc.code)
    return JSONResponse(body, status_code=exc.status, headers=exc.headers)


def _check_key(state: ServeState, request: Request) -> None:
    if not state.requires_key:
        return
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        raise WireError(
            401,
            "You didn't provide an API key. Send it as 'Authorization: Bearer KEY'.",
            code="invalid_api_key",
        )
    if not state.key_matches(given.strip()):
        raise WireError(401, "Incorrect API key provided.", code="invalid_api_key")


def _ready(state: ServeState, model: str) -> ServedModel:
    if model != state.model_id:
        raise WireError(
            404,
            f"The model '{model}' does not exist. This server serves '{state.model_id}'.",
            param="model",
            code="model_not_found",
        )
    if state.served is None:
        if state.load_error:
            raise WireError(503, f"The model failed to load: {state.load_error}", type="server_error")
        raise WireError(
            503,
            f"The model '{state.model_id}' is still loading.",
            type="server_error",
            code="model_loading",
            headers={"Retry-After": str(_LOADING_RETRY_S)},
        )
    return state.served


async def _read_json(request: Request) -> Any:
    try:
        return json.loads(await request.body())
    except ValueError as exc:
        raise WireError(400, f"The request body is not valid JSON: {exc}.") from exc


async def models(request: Request) -> Response:
    """``GET /v1/models``: the one model, with its context length once loaded."""
    state: ServeState = request.app.state.serve
    try:
        _check_key(state, request)
    except WireError as exc:
        return _error(exc)
    context = state.served.context_length if state.served is not None else None
    return JSONResponse(models_object([RemoteModelInfo(state.model_id, context)], state.created))


def _prepare(served: ServedModel, req: ChatRequest | CompletionRequest) -> tuple[list[int], tuple[str, ...]]:
    if isinstance(req, ChatRequest):
        return served.chat_prompt(req.messages), served.chat_stops(req.sampling.stop)
    return served.completion_prompt(req.prompt), req.sampling.stop


async def _complete(request: Request, kind: Kind) -> Response:
    state: ServeState = request.app.state.serve
    try:
        _check_key(state, request)
        req = PARSERS[kind.value](await _read_json(request))
        served = _ready(state, req.model)
        prompt_ids, stops = _prepare(served, req)
        asked_value = req.sampling.get("max_new_tokens")
        asked = int(asked_value) if asked_value is not None else None
        sampling = served.budget(len(prompt_ids), req.sampling.apply(served.settings.sampling), asked)
        if isinstance(sampling, PromptTooLong):
            what = "messages" if kind is Kind.CHAT else "prompt"
            raise WireError(400, sampling.message(what), param=what, code="context_length_exceeded")
        try:
            ticket = state.gate.reserve(Owner.API)
        except ModelBusyError as exc:
            raise WireError(
                429,
                f"{exc.message} {exc.hint}",
                type="rate_limit_error",
                code="queue_full",
                headers={"Retry-After": str(exc.retry_after)},
            ) from exc
    except WireError as exc:
        return _error(exc)
    record = state.next_record(len(prompt_ids))
    job = GenerationJob(
        served,
        state.gate,
        ticket,
        prompt_ids,
        sampling,
        stops,
        strip_leading=kind is Kind.CHAT,
        record=record,
    )
    state.jobs.add(job)
    job.start()
    ids = (
        f"chatcmpl-{uuid.uuid4().hex}" if kind is Kind.CHAT else f"cmpl-{uuid.uuid4().hex}",
        int(time.time()),
    )
    if req.stream:
        stream = _stream(state, job, kind, ids, served.model_id, req.include_usage)
        # The background task runs however the response ends, even when the client left before the
        # stream was first read (then the generator's own ``finally`` never runs).
        return StreamingResponse(
            stream,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache"},
            background=BackgroundTask(job.abandon),
        )
    return await _whole(state, request, job, kind, ids, served.model_id)


def _usage(job: GenerationJob, stats: GenerationStats | None) -> dict[str, int]:
    return usage_object(len(job.prompt_ids), stats.new_tokens if stats is not None else 0)


def _finish(stats: GenerationStats | None) -> str:
    return FINISH_REASONS[stats.stop_reason if stats is not None else StopReason.EOS]


def _failure(exc: BaseException) -> WireError:
    said = exc.user_message if isinstance(exc, QuantDeskError) else "The model failed while generating."
    return WireError(500, said, type="server_error")


async def _stream(
    state: ServeState, job: GenerationJob, kind: Kind, ids: tuple[str, int], model: str, include_usage: bool
) -> AsyncIterator[bytes]:
    """The server-sent events of one streamed answer. Starlette cancels this generator when the client
    disconnects: the ``finally`` then stops the generation."""
    meta: Mapping[str, Any] = {"id": ids[0], "created": ids[1], "model": model}
    first = True
    stats: GenerationStats | None = None
    finished = False
    try:
        while (item := await job.events.get()) is not END:
            if isinstance(item, str):
                yield sse_event(chunk_object(kind, **meta, text=item, first=first))
                first = False
            elif isinstance(item, GenerationStats):
                stats = item
            elif isinstance(item, BaseException):
                failure = _failure(item)
                finished = True
                yield sse_event(error_object(failure.message, failure.type))
                return
        finished = True
        yield sse_event(chunk_object(kind, **meta, finish_reason=_finish(stats), first=first))
        if include_usage:
            yield sse_event(chunk_object(kind, **meta, usage=_usage(job, stats)))
        yield SSE_DONE
    finally:
        if not finished:  # the client went away (Starlette cancelled us)
            job.disconnect()
        state.jobs.discard(job)


async def _until_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _whole(
    state: ServeState, request: Request, job: GenerationJob, kind: Kind, ids: tuple[str, int], model: str
) -> Response:
    """A whole answer; the generation stops if the client disconnects while waiting for it."""
    watcher = asyncio.create_task(_until_disconnect(request.receive))
    texts: list[str] = []
    stats: GenerationStats | None = None
    failure: BaseException | None = None
    try:
        while True:
            getter = asyncio.ensure_future(job.events.get())
            await asyncio.wait({getter, watcher}, return_when=asyncio.FIRST_COMPLETED)
            if not getter.done():
                getter.cancel()
                job.disconnect()
                return Response(status_code=499)  # nobody reads it: the client is gone
            item = getter.result()
            if item is END:
                break
            if isinstance(item, str):
                texts.append(item)
            elif isinstance(item, GenerationStats):
                stats = item
            elif isinstance(item, BaseException):
                failure = item
    finally:
        watcher.cancel()
        state.jobs.discard(job)
    if failure is not None:
        return _error(_failure(failure))
    text = "".join(texts)
    body = completion_object(
        kind,
        id=ids[0],
        created=ids[1],
        model=model,
        text=text,
        finish_reason=_finish(stats),
        usage=_usage(job, stats),
    )
    return JSONResponse(body)


async def chat_completions(request: Request) -> Response:
    """``POST /v1/chat/completions``."""
    return await _complete(request, Kind.CHAT)


async def completions(request: Request) -> Response:
    """``POST /v1/completions``."""
    return await _complete(request, Kind.TEXT)


async def _http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    message = {404: f"Unknown route {request.url.path}; the API is under /v1.", 405: "Method not allowed."}
    return _error(WireError(status, message.get(status, "The server failed."), type="invalid_request_error"))


def create_app(state: ServeState) -> Starlette:
    """The ASGI app serving ``state``."""
    app = Starlette(
        routes=[
            Route("/v1/models", models, methods=["GET"]),
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
            Route("/v1/completions", completions, methods=["POST"]),
        ],
        exception_handlers={HTTPException: _http_error},
    )
    app.state.serve = state
    return app
