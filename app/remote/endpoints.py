"""Saved remote endpoints: OpenAI-compatible servers QuantDesk chats with (vLLM, TGI, TabbyAPI, llama.cpp).

An endpoint is a name, a base URL, the model id to use, and who renders the prompt: the server (its
``/v1/chat/completions`` applies the model's own chat template) or QuantDesk (one of its templates
renders the text for ``/v1/completions``). Endpoints live in ``<config dir>/endpoints.json``, written
atomically. The API key is kept only in the OS keyring (service ``QuantDesk``, user
``endpoint:<name>``) or read from an environment variable the endpoint names: never in a plain file,
a message or a log.

:func:`test_connection` is the "Test connection" action (Qt-free; blocking, for a worker thread;
:func:`check_connection` is the same for an event loop).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from app.atomic_files import read_json_store, set_aside, write_json_atomic
from app.auth import KEYRING_SERVICE
from app.errors import EndpointConfigError
from app.paths import app_paths

if TYPE_CHECKING:
    from app.chat.detection import TemplateChoice
    from app.remote.client import Timeouts
    from app.remote.engine import RemoteModel
    from app.remote.wire import RemoteModelInfo

ENDPOINTS_VERSION: Final = 1
DEFAULT_QUANTDESK_TEMPLATE: Final = "ChatML"
_NAME_MAX: Final = 80


class TemplateMode(StrEnum):
    """Who turns the conversation into the model's prompt."""

    SERVER = "server"  # /v1/chat/completions with messages: the server's chat template
    QUANTDESK = "quantdesk"  # /v1/completions with text rendered by a QuantDesk template


def keyring_user(name: str) -> str:
    """The keyring user name under which an endpoint's API key is stored."""
    return f"endpoint:{name}"


def normalize_base_url(text: str) -> str:
    """A checked base URL: ``http(s)://host[:port][/path]`` without a trailing slash.

    Raises EndpointConfigError for anything else, and for a URL with ``user:password@`` in it (a
    secret would end up in the endpoints file: the key belongs in the keyring).
    """
    url = text.strip()
    hint = "Give the server's base URL, e.g. http://gpu-box:8000/v1."
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError for a bad port
    except ValueError as exc:
        raise EndpointConfigError(f"'{url}' is not a valid URL ({exc}).", hint) from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise EndpointConfigError(f"'{url}' is not an http(s) URL.", hint)
    if parts.username is not None or parts.password is not None:
        raise EndpointConfigError(
            "The URL contains a user name or password.",
            "Remove it from the URL and give the API key separately (it is kept in the OS keyring).",
        )
    if parts.query or parts.fragment:
        raise EndpointConfigError(f"'{url}' has a query or fragment; a base URL has neither.", hint)
    del port
    return url.rstrip("/")


def _check_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > _NAME_MAX or any(ord(c) < 32 for c in name):
        raise EndpointConfigError(
            "An endpoint needs a name of 1 to 80 printable characters.", "Choose another name."
        )
    return name


@dataclass(frozen=True)
class Endpoint:
    """A saved OpenAI-compatible server. Holds no secret: the API key is in the keyring."""

    name: str
    base_url: str
    model: str | None = None  # None: the server's only model
    template_mode: TemplateMode = TemplateMode.SERVER
    template: str | None = None  # QuantDesk template for TemplateMode.QUANTDESK (None: ChatML)
    context_length: int | None = None  # None: what the server states, else 4096
    api_key_env: str | None = None  # an environment variable holding the key (wins over the keyring)
    extra_sampling: bool = True  # send top_k/min_p/repetition_penalty (strict OpenAI servers refuse them)

    def checked(self) -> Endpoint:
        """This endpoint validated and normalized; raises EndpointConfigError."""
        if self.context_length is not None and self.context_length <= 0:
            raise EndpointConfigError("The context length must be a positive number of tokens.", "")
        env = (self.api_key_env or "").strip() or None
        return replace(
            self,
            name=_check_name(self.name),
            base_url=normalize_base_url(self.base_url),
            model=(self.model or "").strip() or None,
            template_mode=TemplateMode(self.template_mode),
            template=(self.template or "").strip() or None,
            api_key_env=env,
        )

    def to_dict(self) -> dict[str, Any]:
        """The endpoint's JSON record."""
        return {
            "name": self.name,
            "base_url": self.base_url,
            "model": self.model,
            "template_mode": self.template_mode.value,
            "template": self.template,
            "context_length": self.context_length,
            "api_key_env": self.api_key_env,
            "extra_sampling": self.extra_sampling,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Endpoint:
        """An endpoint from its JSON record; raises EndpointConfigError for a malformed one."""
        try:
            context = data.get("context_length")
            if context is not None and (not isinstance(context, int) or isinstance(context, bool)):
                raise ValueError("context_length must be a number")
            return cls(
                name=str(data["name"]),
                base_url=str(data["base_url"]),
                model=_opt_str(data.get("model")),
                template_mode=TemplateMode(data.get("template_mode", TemplateMode.SERVER.value)),
                template=_opt_str(data.get("template")),
                context_length=context,
                api_key_env=_opt_str(data.get("api_key_env")),
                extra_sampling=bool(data.get("extra_sampling", True)),
            ).checked()
        except (KeyError, ValueError, TypeError) as exc:
            raise EndpointConfigError(f"A saved endpoint is malformed ({exc}).", "") from exc

    @property
    def template_name(self) -> str:
        """The QuantDesk template used in QuantDesk mode."""
        return self.template or DEFAULT_QUANTDESK_TEMPLATE


def _opt_str(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


# -- API keys: OS keyring or an environment variable, nothing else -----------------------------------


def read_api_key(endpoint: Endpoint) -> str | None:
    """The endpoint's API key: its environment variable when it names one, else the keyring."""
    if endpoint.api_key_env:
        value = os.environ.get(endpoint.api_key_env, "").strip()
        if value:
            return value
    try:
        import keyring

        stored = keyring.get_password(KEYRING_SERVICE, keyring_user(endpoint.name))
    except Exception:  # no keyring backend means "no key"
        return None
    return stored.strip() if stored else None


def store_api_key(name: str, api_key: str) -> None:
    """Keep ``api_key`` in the OS keyring for endpoint ``name``; EndpointConfigError without a keyring."""
    try:
        import keyring

        keyring.set_password(KEYRING_SERVICE, keyring_user(name), api_key.strip())
    except Exception as exc:
        raise EndpointConfigError(
            "The API key could not be saved: no OS keyring is available.",
            "Put the key in an environment variable and name it in the endpoint (api_key_env), or "
            "use --api-key-env VAR.",
            detail=exc.__class__.__name__,
        ) from exc


def delete_api_key(name: str) -> None:
    """Remove endpoint ``name``'s key from the keyring (nothing happens when there is none)."""
    with contextlib.suppress(Exception):
        import keyring

        keyring.delete_password(KEYRING_SERVICE, keyring_user(name))


# -- the endpoints file -----------------------------------------------------------------------------


class _Keep:
    """Marker: leave the stored API key as it is."""


KEEP_KEY: Final = _Keep()


@dataclass
class EndpointStore:
    """The saved endpoints in ``<config dir>/endpoints.json`` (or ``path``), in the order saved."""

    path: Path = field(default_factory=lambda: app_paths().config_dir / "endpoints.json")

    def endpoints(self) -> list[Endpoint]:
        """Every saved endpoint. A damaged file (not UTF-8, not JSON, no endpoint list) is set aside,
        never deleted: this call raises EndpointConfigError saying where it went, the next finds none."""
        data, warning = read_json_store(self.path, what="The saved servers file")
        if warning:
            raise EndpointConfigError(warning, "")
        if data is None:
            return []
        hint = f"Fix or delete {self.path}."
        records = data.get("endpoints")
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            aside = set_aside(self.path)
            raise EndpointConfigError(
                f"The saved servers file held no list of servers; QuantDesk set it aside as {aside}.", ""
            )
        endpoints = []
        for record in records:
            try:
                endpoints.append(Endpoint.from_dict(record))
            except EndpointConfigError as exc:
                raise EndpointConfigError(exc.message, hint) from exc
        return endpoints

    def find(self, name: str) -> Endpoint | None:
        """The endpoint called ``name`` (case-insensitive), or None."""
        wanted = name.strip().casefold()
        return next((e for e in self.endpoints() if e.name.casefold() == wanted), None)

    def get(self, name: str) -> Endpoint:
        """The endpoint called ``name``; EndpointConfigError when there is none."""
        found = self.find(name)
        if found is None:
            names = ", ".join(e.name for e in self.endpoints()) or "none yet"
            raise EndpointConfigError(f"There is no saved endpoint called '{name}'.", f"Saved: {names}.")
        return found

    def save(self, endpoint: Endpoint, api_key: str | _Keep | None = KEEP_KEY) -> Endpoint:
        """Add or replace (by name, case-insensitive) ``endpoint``; returns it as stored.

        ``api_key``: a key to keep in the keyring, None or "" to remove the stored one, or
        :data:`KEEP_KEY` to leave it as it is.
        """
        checked = endpoint.checked()
        endpoints = self.endpoints()
        wanted = checked.name.casefold()
        previous = next((e for e in endpoints if e.name.casefold() == wanted), None)
        if isinstance(api_key, _Keep) and previous is not None and previous.name != checked.name:
            # Renamed in case only: the key moves to the keyring entry of the new spelling.
            old_key = read_api_key(replace(previous, api_key_env=None))
            if old_key:
                store_api_key(checked.name, old_key)
            delete_api_key(previous.name)
        if isinstance(api_key, str) and api_key.strip():
            store_api_key(checked.name, api_key)
        elif not isinstance(api_key, _Keep):
            delete_api_key(checked.name)
        if previous is None:
            endpoints.append(checked)
        else:
            endpoints = [checked if e is previous else e for e in endpoints]
        self._write(endpoints)
        return checked

    def delete(self, name: str) -> bool:
        """Remove the endpoint and its stored key; False when there was none."""
        endpoints = self.endpoints()
        kept = [e for e in endpoints if e.name.casefold() != name.strip().casefold()]
        if len(kept) == len(endpoints):
            return False
        for gone in endpoints:
            if gone not in kept:
                delete_api_key(gone.name)
        self._write(kept)
        return True

    def _write(self, endpoints: list[Endpoint]) -> None:
        write_json_atomic(
            self.path, {"version": ENDPOINTS_VERSION, "endpoints": [e.to_dict() for e in endpoints]}
        )


# -- using an endpoint ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConnectionReport:
    """What "Test connection" found: the server answers, its models, and whether ours is one."""

    base_url: str
    models: tuple[RemoteModelInfo, ...]
    model: str | None  # the model the endpoint would use (None: none could be chosen)
    model_found: bool
    seconds: float

    @property
    def message(self) -> str:
        """One line for the UI."""
        names = ", ".join(m.id for m in self.models[:5]) + (" ..." if len(self.models) > 5 else "")
        served = f"{len(self.models)} model{'s' if len(self.models) != 1 else ''}"
        if self.model_found:
            return f"Connected in {self.seconds * 1000:.0f} ms; serves {served}; using '{self.model}'."
        if self.model:
            return f"Connected, but '{self.model}' is not served. It serves: {names or 'nothing'}."
        return f"Connected; serves {served}: {names or 'nothing'}. Choose the model to use."


async def check_connection(
    endpoint: Endpoint, api_key: str | _Keep | None = KEEP_KEY, *, timeouts: Timeouts | None = None
) -> ConnectionReport:
    """``GET /v1/models`` on the endpoint (async). Raises a typed RemoteError when the server cannot be
    reached, refuses the key or is not OpenAI-compatible; a missing model is reported, not raised.

    ``api_key``: the key to try (e.g. typed but not saved yet), or KEEP_KEY for the stored one.
    """
    from app.remote.client import OpenAIClient, Timeouts

    checked = endpoint.checked()
    key = read_api_key(checked) if isinstance(api_key, _Keep) else api_key
    started = time.perf_counter()
    async with OpenAIClient(
        checked.base_url, key, timeouts=timeouts or Timeouts(connect=10.0, read=20.0, write=10.0)
    ) as client:
        models = tuple(await client.list_models())
    seconds = time.perf_counter() - started
    if checked.model:
        found = any(m.id == checked.model for m in models)
        return ConnectionReport(checked.base_url, models, checked.model, found, seconds)
    only = models[0].id if len(models) == 1 else None
    return ConnectionReport(checked.base_url, models, only, only is not None, seconds)


def test_connection(
    endpoint: Endpoint, api_key: str | _Keep | None = KEEP_KEY, *, timeouts: Timeouts | None = None
) -> ConnectionReport:
    """Blocking :func:`check_connection` (call it on a worker thread, not the GUI thread)."""
    import asyncio

    return asyncio.run(check_connection(endpoint, api_key, timeouts=timeouts))


test_connection.__test__ = False  # type: ignore[attr-defined]  # not a pytest test despite its name


def connect(endpoint: Endpoint, api_key: str | _Keep | None = KEEP_KEY, **options: Any) -> RemoteModel:
    """A :class:`~app.remote.engine.RemoteModel` for the endpoint (its model checked)."""
    from app.remote.engine import RemoteModel

    checked = endpoint.checked()
    key = read_api_key(checked) if isinstance(api_key, _Keep) else api_key
    return RemoteModel.connect(
        checked.base_url,
        checked.model,
        api_key=key,
        context_length=checked.context_length,
        extra_sampling=checked.extra_sampling,
        **options,
    )


def template_choice(endpoint: Endpoint, override: str | None = None) -> TemplateChoice:
    """The template a chat with this endpoint uses.

    ``override`` (a template name, e.g. ``--template``) means QuantDesk mode with that template;
    ``"server"`` (or a name for the model's own template, such as ``"jinja"``: on a server that is the
    server's) forces server mode. Otherwise the endpoint's mode decides.
    """
    from app.chat.detection import OWN_TEMPLATE_NAMES, TemplateChoice, TemplateSource
    from app.chat.templates import get_template, load_user_templates
    from app.remote.prompting import ServerTemplate

    if override and override.strip().lower() in {"server", *OWN_TEMPLATE_NAMES}:
        return TemplateChoice(
            ServerTemplate(), TemplateSource.CHAT, "the server applies the model's template"
        )
    if override:
        spec = get_template(override, load_user_templates())
        return TemplateChoice(spec, TemplateSource.CHAT, f"rendered by QuantDesk ({spec.name})")
    if endpoint.template_mode is TemplateMode.QUANTDESK:
        spec = get_template(endpoint.template_name, load_user_templates())
        return TemplateChoice(
            spec, TemplateSource.PROFILE, f"rendered by QuantDesk ({spec.name}), set in the endpoint"
        )
    # The server renders with the model's own template: the same source a local model's Jinja has.
    return TemplateChoice(ServerTemplate(), TemplateSource.MODEL, "applied by the server")
