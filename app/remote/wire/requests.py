"""Requests in the wire format: the client builds them, the server reads and checks them.

:func:`chat_body` and :func:`completion_body` are what the remote engine sends; :func:`parse_chat_request`
and :func:`parse_completion_request` are how QuantDesk's server reads the same fields (and those of other
OpenAI clients), refusing a bad one with a :class:`WireError` that carries the HTTP status and OpenAI's
error fields. A field the request leaves out keeps the model's default (its profile):
:meth:`SamplingRequest.apply` layers the request over it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final

from app.backends.base import Sampling
from app.chat.templates import ChatMessage, Role

# OpenAI's roles; "developer" is its newer name for the system message.
_ROLES: Final[Mapping[str, Role]] = {
    "system": Role.SYSTEM,
    "developer": Role.SYSTEM,
    "user": Role.USER,
    "assistant": Role.ASSISTANT,
}
_MAX_STOPS: Final = 16


class WireError(Exception):
    """A request the server refuses, in OpenAI's terms: an HTTP status and the ``error`` object's fields."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = dict(headers or {})


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


def auth_headers(api_key: str | None) -> dict[str, str]:
    """The headers of every request: JSON answers, and the key (only ever in Authorization)."""
    headers = {"Accept": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    return headers


# -- the server's side: reading a request ------------------------------------------------------------


@dataclass(frozen=True)
class _Field:
    """One numeric sampling field: its type and the range a request may give."""

    kind: type
    low: float
    high: float


# name in the request -> (its range, the Sampling attribute it sets, or None when no backend has it)
_SAMPLING_FIELDS: Final[Mapping[str, tuple[_Field, str | None]]] = {
    "temperature": (_Field(float, 0.0, 5.0), "temperature"),
    "top_p": (_Field(float, 0.0, 1.0), "top_p"),
    "top_k": (_Field(int, 0, 1_000_000), "top_k"),
    "min_p": (_Field(float, 0.0, 1.0), "min_p"),
    "repetition_penalty": (_Field(float, 0.0, 10.0), "repetition_penalty"),
    "repeat_penalty": (_Field(float, 0.0, 10.0), "repetition_penalty"),  # llama.cpp's name
    "max_tokens": (_Field(int, 1, 10_000_000), "max_new_tokens"),
    "max_completion_tokens": (_Field(int, 1, 10_000_000), "max_new_tokens"),  # OpenAI's newer name
    "seed": (_Field(int, -(2**63), 2**63 - 1), "seed"),
    # Accepted for compatibility; QuantDesk's backends have only the repetition penalty.
    "frequency_penalty": (_Field(float, -2.0, 2.0), None),
    "presence_penalty": (_Field(float, -2.0, 2.0), None),
}


@dataclass(frozen=True)
class SamplingRequest:
    """The sampler fields a request gave (only those), and its stop strings."""

    values: tuple[tuple[str, float | int], ...] = ()  # (Sampling attribute, value)
    stop: tuple[str, ...] = ()

    def get(self, name: str) -> float | int | None:
        """The value the request gave for a Sampling attribute, or None."""
        return next((v for k, v in self.values if k == name), None)

    def apply(self, defaults: Sampling) -> Sampling:
        """``defaults`` (the model's profile) with the request's fields over them."""
        changes: dict[str, Any] = dict(self.values)
        return replace(defaults, **changes) if changes else defaults


@dataclass(frozen=True)
class ChatRequest:
    """A checked ``POST /v1/chat/completions``."""

    model: str
    messages: tuple[ChatMessage, ...]
    stream: bool
    include_usage: bool
    sampling: SamplingRequest


@dataclass(frozen=True)
class CompletionRequest:
    """A checked ``POST /v1/completions``."""

    model: str
    prompt: str
    stream: bool
    include_usage: bool
    sampling: SamplingRequest


def _bad(message: str, param: str | None = None) -> WireError:
    return WireError(400, message, param=param)


def _number(name: str, value: Any, spec: _Field) -> float | int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _bad(f"'{name}' must be a number.", name)
    if spec.kind is int:
        if isinstance(value, float) and not value.is_integer():
            raise _bad(f"'{name}' must be a whole number.", name)
        value = int(value)
    if not spec.low <= value <= spec.high:
        raise _bad(f"'{name}' must be between {spec.low:g} and {spec.high:g}; got {value}.", name)
    return float(value) if spec.kind is float else value


def _stops(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(s, str) for s in items):
        raise _bad("'stop' must be a string or a list of strings.", "stop")
    if len(items) > _MAX_STOPS:
        raise _bad(f"'stop' may hold at most {_MAX_STOPS} strings.", "stop")
    return tuple(s for s in dict.fromkeys(items) if s)


def _sampling(body: Mapping[str, Any]) -> SamplingRequest:
    values: dict[str, float | int] = {}
    for name, (spec, attribute) in _SAMPLING_FIELDS.items():
        value = body.get(name)
        if value is None:
            continue
        number = _number(name, value, spec)
        if attribute is not None:
            values[attribute] = number
    return SamplingRequest(tuple(values.items()), _stops(body.get("stop")))


def _common(body: Any) -> tuple[str, bool, bool, SamplingRequest]:
    if not isinstance(body, dict):
        raise _bad("The request body must be a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _bad("'model' is required: the id GET /v1/models lists.", "model")
    n = body.get("n", 1)
    if n not in (1, None):
        raise _bad("Only n=1 is supported: one choice per request.", "n")
    stream = body.get("stream", False)
    if not isinstance(stream, bool | None):
        raise _bad("'stream' must be true or false.", "stream")
    options = body.get("stream_options") or {}
    include_usage = isinstance(options, dict) and options.get("include_usage") is True
    return model, bool(stream), include_usage, _sampling(body)


def _content(value: Any, index: int) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, list):  # content parts: text only
        texts: list[str] = []
        for part in value:
            if (
                not isinstance(part, dict)
                or part.get("type") != "text"
                or not isinstance(part.get("text"), str)
            ):
                raise _bad(f"messages[{index}]: only text content parts are supported.", "messages")
            texts.append(part["text"])
        return "".join(texts)
    raise _bad(f"messages[{index}].content must be a string or a list of text parts.", "messages")


def _message(item: Any, index: int) -> ChatMessage:
    if not isinstance(item, dict):
        raise _bad(f"messages[{index}] must be an object with 'role' and 'content'.", "messages")
    role = _ROLES.get(str(item.get("role")))
    if role is None:
        raise _bad(
            f"messages[{index}].role {item.get('role')!r} is not supported; use system, user or assistant.",
            "messages",
        )
    return ChatMessage(role, _content(item.get("content"), index))


def parse_chat_request(body: Any) -> ChatRequest:
    """Read a ``/v1/chat/completions`` body (as JSON decoded it); WireError (400) when it is unusable."""
    model, stream, include_usage, sampling = _common(body)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _bad("'messages' must be a non-empty list.", "messages")
    parsed = tuple(_message(item, i) for i, item in enumerate(messages))
    return ChatRequest(model, parsed, stream, include_usage, sampling)


def parse_completion_request(body: Any) -> CompletionRequest:
    """Read a ``/v1/completions`` body; WireError (400) when it is unusable. One prompt per request."""
    model, stream, include_usage, sampling = _common(body)
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str) or not prompt:
        raise _bad("'prompt' must be one non-empty string.", "prompt")
    return CompletionRequest(model, prompt, stream, include_usage, sampling)


# A parser per route: the server looks the route up here.
PARSERS: Final[Mapping[str, Callable[[Any], ChatRequest | CompletionRequest]]] = {
    "chat/completions": parse_chat_request,
    "completions": parse_completion_request,
}
