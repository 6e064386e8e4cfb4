"""The OpenAI wire format, in one place: what QuantDesk's server speaks and its remote engine reads.

- :mod:`.requests`: request bodies, built by the client (:func:`chat_body`, :func:`completion_body`) and
  read and checked by the server (:func:`parse_chat_request`, :func:`parse_completion_request`, which
  raise :class:`WireError` with the HTTP status and OpenAI's error fields).
- :mod:`.answers`: answers, written by the server (completion objects, stream chunks, usage, model
  list, error object, server-sent event framing).
- :mod:`.reading`: answers read back by the client (:class:`StreamState` for streams, model lists,
  error bodies of any common server, Retry-After).

A test feeds what :mod:`.answers` writes to :mod:`.reading`, so the two sides cannot drift apart.
"""

from app.remote.wire.answers import (
    FINISH_REASONS,
    SSE_DONE,
    Kind,
    chunk_object,
    completion_object,
    error_object,
    models_object,
    sse_event,
    usage_object,
)
from app.remote.wire.reading import (
    BODY_EXCERPT,
    RemoteModelInfo,
    StreamEnd,
    StreamState,
    api_url,
    content_kind,
    display_url,
    error_text,
    malformed_stream,
    parse_models,
    retry_after_seconds,
)
from app.remote.wire.requests import (
    PARSERS,
    ChatRequest,
    CompletionRequest,
    SamplingRequest,
    WireError,
    auth_headers,
    chat_body,
    completion_body,
    parse_chat_request,
    parse_completion_request,
    sampling_fields,
)

__all__ = [
    "BODY_EXCERPT",
    "FINISH_REASONS",
    "PARSERS",
    "SSE_DONE",
    "ChatRequest",
    "CompletionRequest",
    "Kind",
    "RemoteModelInfo",
    "SamplingRequest",
    "StreamEnd",
    "StreamState",
    "WireError",
    "api_url",
    "auth_headers",
    "chat_body",
    "chunk_object",
    "completion_body",
    "completion_object",
    "content_kind",
    "display_url",
    "error_object",
    "error_text",
    "malformed_stream",
    "models_object",
    "parse_chat_request",
    "parse_completion_request",
    "parse_models",
    "retry_after_seconds",
    "sampling_fields",
    "sse_event",
    "usage_object",
]
