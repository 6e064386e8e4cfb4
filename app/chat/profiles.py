"""Per-model profiles and layered settings, each effective value reported with its source.

Layers, weakest first: app defaults < model metadata (generation_config.json, config.json) <
the model's profile < this chat's overrides. A profile is one JSON file per model (repo + branch) in
``<config dir>/profiles``, written atomically; a file that cannot be read is renamed aside
(``*.corrupt-<time>.json``), defaults are used and :class:`ProfileLoad` carries a warning for the UI.
A single bad value only drops that value (with a warning), not the whole profile.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from enum import StrEnum
from pathlib import Path
from typing import Any, Final, Generic, TypeVar

from app.atomic_files import write_json_atomic
from app.backends.base import LoadSettings, Sampling
from app.catalog.vram import CacheType
from app.chat.model_files import ModelFiles
from app.paths import app_paths

PROFILE_VERSION: Final = 1
LOCAL_REPO: Final = "local"  # repo id of a model folder that came from no known repo
_SAFE: Final = re.compile(r"[^A-Za-z0-9._-]+")

T = TypeVar("T")


class SettingSource(StrEnum):
    """Where an effective setting's value came from."""

    DEFAULT = "default"
    MODEL = "model"
    PROFILE = "profile"
    CHAT = "this chat"


@dataclass(frozen=True)
class ModelSettings:
    """One layer of settings; None means "not set in this layer"."""

    backend: str | None = None  # "auto", "gptqmodel" or "exllamav2"
    context_length: int | None = None
    cache_type: str | None = None  # CacheType value
    gpu_split: tuple[float, ...] | None = None  # GiB per GPU
    template: str | None = None  # template name or "jinja"; None: detect
    system_prompt: str | None = None  # "": explicitly no system prompt
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    repetition_penalty: float | None = None
    max_new_tokens: int | None = None
    seed: int | None = None
    extra_stop_strings: tuple[str, ...] | None = None
    trust_remote_code: bool | None = None

    def merged_over(self, base: ModelSettings) -> ModelSettings:
        """``base`` with every value set here replacing its own."""
        return replace(base, **{f.name: v for f in fields(self) if (v := getattr(self, f.name)) is not None})

    def to_dict(self) -> dict[str, Any]:
        """The values set in this layer, JSON-ready."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None:
                out[f.name] = list(value) if isinstance(value, tuple) else value
        return out


_DEFAULT_SAMPLING: Final = Sampling()

# App defaults: the weakest layer. Context length has no default: the model's own applies.
APP_DEFAULTS: Final = ModelSettings(
    backend="auto",
    cache_type=CacheType.FP16.value,
    template=None,
    temperature=_DEFAULT_SAMPLING.temperature,
    top_p=_DEFAULT_SAMPLING.top_p,
    top_k=_DEFAULT_SAMPLING.top_k,
    min_p=_DEFAULT_SAMPLING.min_p,
    repetition_penalty=_DEFAULT_SAMPLING.repetition_penalty,
    max_new_tokens=_DEFAULT_SAMPLING.max_new_tokens,
    extra_stop_strings=(),
    trust_remote_code=False,
)


# -- validation: one rule per field (data, not code paths) ------------------------------------------


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _as_float_tuple(v: Any) -> tuple[float, ...]:
    if not isinstance(v, list) or not v or not all(_is_number(x) and x > 0 for x in v):
        raise ValueError("a list of positive GiB values")
    return tuple(float(x) for x in v)


def _as_str_tuple(v: Any) -> tuple[str, ...]:
    if not isinstance(v, list) or not all(isinstance(x, str) and x for x in v):
        raise ValueError("a list of non-empty strings")
    return tuple(v)


def _check(
    ok: Callable[[Any], bool], what: str, convert: Callable[[Any], Any] = lambda v: v
) -> Callable[[Any], Any]:
    def validate(value: Any) -> Any:
        if not ok(value):
            raise ValueError(what)
        return convert(value)

    return validate


_VALIDATORS: Final[Mapping[str, Callable[[Any], Any]]] = {
    "backend": _check(lambda v: v in ("auto", "gptqmodel", "exllamav2"), "auto, gptqmodel or exllamav2"),
    "context_length": _check(lambda v: _is_int(v) and v > 0, "a positive integer"),
    "cache_type": _check(
        lambda v: v in {c.value for c in CacheType}, "one of " + ", ".join(c.value for c in CacheType)
    ),
    "gpu_split": _as_float_tuple,
    "template": _check(lambda v: isinstance(v, str) and bool(v.strip()), "a template name"),
    "system_prompt": _check(lambda v: isinstance(v, str), "text"),
    "temperature": _check(lambda v: _is_number(v) and 0 <= v <= 5, "a number from 0 to 5", float),
    "top_p": _check(lambda v: _is_number(v) and 0 < v <= 1, "a number above 0, at most 1", float),
    "top_k": _check(lambda v: _is_int(v) and v >= 0, "an integer >= 0 (0: off)"),
    "min_p": _check(lambda v: _is_number(v) and 0 <= v < 1, "a number from 0 to below 1", float),
    "repetition_penalty": _check(
        lambda v: _is_number(v) and 0 < v <= 5, "a number above 0, at most 5", float
    ),
    "max_new_tokens": _check(lambda v: _is_int(v) and v > 0, "a positive integer"),
    "seed": _check(_is_int, "an integer"),
    "extra_stop_strings": _as_str_tuple,
    "trust_remote_code": _check(lambda v: isinstance(v, bool), "true or false"),
}


def settings_from_dict(data: Mapping[str, Any]) -> tuple[ModelSettings, list[str]]:
    """Validate a settings mapping: the valid values, and one warning per value dropped."""
    values: dict[str, Any] = {}
    warnings: list[str] = []
    for key, raw in data.items():
        validate = _VALIDATORS.get(key)
        if validate is None:
            warnings.append(f"unknown setting '{key}' ignored")
            continue
        if raw is None:
            continue
        try:
            values[key] = validate(raw)
        except ValueError as exc:
            warnings.append(f"'{key}' must be {exc}; {raw!r} ignored")
    return ModelSettings(**values), warnings


# -- model metadata layer ---------------------------------------------------------------------------


def model_layer(files: ModelFiles) -> ModelSettings:
    """What the model itself suggests: generation_config.json's sampler, config.json's context length."""
    gen = files.generation_config
    candidates: dict[str, Any] = {
        key: gen[key]
        for key in ("temperature", "top_p", "top_k", "min_p", "repetition_penalty", "max_new_tokens")
        if key in gen
    }
    # transformers ignores temperature & co when do_sample is false: the model asks for greedy decoding.
    if gen.get("do_sample") is False:
        candidates["temperature"] = 0.0
    if files.context_length:
        candidates["context_length"] = files.context_length
    settings, _warnings = settings_from_dict(candidates)  # a strange value there is simply not used
    return settings


# -- effective settings -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Sourced(Generic[T]):
    """An effective value and the layer it came from."""

    value: T
    source: SettingSource


@dataclass(frozen=True)
class EffectiveSettings:
    """Every setting's effective value with its source, for the UI to show next to each field."""

    values: Mapping[str, Sourced[Any]]

    def __getitem__(self, name: str) -> Sourced[Any]:
        return self.values[name]

    def value(self, name: str) -> Any:
        """The effective value of one setting."""
        return self.values[name].value

    def sampling(self) -> Sampling:
        """The effective sampler."""
        return Sampling(
            temperature=float(self.value("temperature")),
            top_p=float(self.value("top_p")),
            top_k=int(self.value("top_k")),
            min_p=float(self.value("min_p")),
            repetition_penalty=float(self.value("repetition_penalty")),
            max_new_tokens=int(self.value("max_new_tokens")),
            seed=self.value("seed"),
        )

    def load_settings(self) -> LoadSettings:
        """The effective load settings for a backend."""
        split = self.value("gpu_split")
        return LoadSettings(
            context_length=self.value("context_length"),
            cache_type=CacheType(self.value("cache_type")),
            gpu_split=tuple(split) if split else None,
            trust_remote_code=bool(self.value("trust_remote_code")),
        )


def effective_settings(
    model: ModelSettings | None = None,
    profile: ModelSettings | None = None,
    chat: ModelSettings | None = None,
    defaults: ModelSettings = APP_DEFAULTS,
) -> EffectiveSettings:
    """Layer defaults < model < profile < chat; each value keeps the name of the layer that set it."""
    layers = (
        (defaults, SettingSource.DEFAULT),
        (model, SettingSource.MODEL),
        (profile, SettingSource.PROFILE),
        (chat, SettingSource.CHAT),
    )
    values: dict[str, Sourced[Any]] = {}
    for f in fields(ModelSettings):
        chosen = Sourced[Any](None, SettingSource.DEFAULT)
        for layer, source in layers:
            if layer is not None and (value := getattr(layer, f.name)) is not None:
                chosen = Sourced(value, source)
        values[f.name] = chosen
    return EffectiveSettings(values)


# -- profiles on disk -------------------------------------------------------------------------------


@dataclass(frozen=True)
class MeasuredMemory:
    """Memory measured after the last successful load."""

    backend: str
    bytes: int
    context_length: int | None = None
    measured_at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class Profile:
    """A model's saved settings (repo + branch), and the memory it took last time."""

    repo_id: str
    branch: str
    settings: ModelSettings = field(default_factory=ModelSettings)
    measured: MeasuredMemory | None = None

    def to_dict(self) -> dict[str, Any]:
        """The file's JSON content."""
        return {
            "version": PROFILE_VERSION,
            "repo_id": self.repo_id,
            "branch": self.branch,
            "settings": self.settings.to_dict(),
            "measured": None
            if self.measured is None
            else {
                "backend": self.measured.backend,
                "bytes": self.measured.bytes,
                "context_length": self.measured.context_length,
                "measured_at": self.measured.measured_at,
            },
        }


@dataclass(frozen=True)
class ProfileLoad:
    """A loaded profile plus a warning to show when the file was damaged (None when all was well)."""

    profile: Profile
    warning: str | None = None
    set_aside: Path | None = None  # where a corrupt file was moved


def local_profile_key(model_dir: Path) -> tuple[str, str]:
    """(repo, branch) for a model folder that came from no known repo: keyed by its resolved path."""
    resolved = str(model_dir.expanduser().resolve())
    return LOCAL_REPO, f"{model_dir.name}-{hashlib.sha256(resolved.encode()).hexdigest()[:10]}"


class ProfileStore:
    """Profiles in ``<config dir>/profiles`` (or ``directory``), one JSON file per repo + branch."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory or app_paths().config_dir / "profiles"

    def path_for(self, repo_id: str, branch: str) -> Path:
        """The file of one model's profile: a readable name plus a hash, so distinct keys never collide."""
        key = f"{repo_id}\0{branch}"
        readable = _SAFE.sub("_", f"{repo_id}__{branch}").strip("_")[:80]
        return self.directory / f"{readable}-{hashlib.sha256(key.encode()).hexdigest()[:8]}.json"

    def load(self, repo_id: str, branch: str) -> ProfileLoad:
        """The profile (empty when there is none); a corrupt file is set aside and reported."""
        path = self.path_for(repo_id, branch)
        empty = Profile(repo_id, branch)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return ProfileLoad(empty)
        except OSError as exc:
            return ProfileLoad(
                empty, f"The settings of {repo_id}:{branch} could not be read ({exc}); defaults apply."
            )
        try:
            data = json.loads(raw.decode("utf-8"))  # bytes that are not UTF-8 are damage too
            if not isinstance(data, dict) or not isinstance(data.get("settings", {}), dict):
                raise ValueError("not a profile object")
        except ValueError as exc:
            aside = path.with_name(f"{path.stem}.corrupt-{int(time.time())}.json")
            with contextlib.suppress(OSError):
                os.replace(path, aside)
            return ProfileLoad(
                empty,
                f"The saved settings of {repo_id}:{branch} were damaged ({exc}) and have been set aside as "
                f"{aside.name}; defaults apply.",
                aside,
            )
        settings, problems = settings_from_dict(data.get("settings", {}))
        profile = Profile(repo_id, branch, settings, _measured(data.get("measured")))
        warning = None
        if problems:
            warning = f"Some saved settings of {repo_id}:{branch} were ignored: " + "; ".join(problems) + "."
        return ProfileLoad(profile, warning)

    def save(self, profile: Profile) -> Path:
        """Write the profile atomically; returns its path."""
        path = self.path_for(profile.repo_id, profile.branch)
        write_json_atomic(path, profile.to_dict())
        return path

    def update(self, repo_id: str, branch: str, changes: ModelSettings) -> Profile:
        """Merge ``changes`` into the saved profile and save it (e.g. ``--save-profile``)."""
        current = self.load(repo_id, branch).profile
        profile = replace(current, settings=changes.merged_over(current.settings))
        self.save(profile)
        return profile

    def record_memory(self, repo_id: str, branch: str, measured: MeasuredMemory) -> Profile:
        """Store the memory measured after a load."""
        profile = replace(self.load(repo_id, branch).profile, measured=measured)
        self.save(profile)
        return profile


def _measured(raw: Any) -> MeasuredMemory | None:
    if not isinstance(raw, dict):
        return None
    try:
        context = raw.get("context_length")
        return MeasuredMemory(
            backend=str(raw["backend"]),
            bytes=int(raw["bytes"]),
            context_length=int(context) if context is not None else None,
            measured_at=float(raw.get("measured_at", 0.0)),
        )
    except (KeyError, TypeError, ValueError):
        return None
