"""Checks every backend runs on a model directory before any heavy import: files, remote code, memory.

Nothing here imports torch or a backend library, so a broken download or a model that needs remote code
is reported in milliseconds, with a message a user understands, instead of as a traceback after a
7-second import.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import json
import os
import threading
import traceback
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import psutil

from app.backends.remote_code import find_remote_code
from app.catalog.architecture import Architecture, architecture_from_config
from app.catalog.vram import CacheType, kv_cache_bytes
from app.errors import (
    BackendError,
    LoadCancelledError,
    MissingFilesError,
    ModelLoadError,
    OutOfMemoryError,
    RemoteCodeConsentError,
    UnsupportedArchitectureError,
)

_WEIGHT_SUFFIXES = (".safetensors", ".bin")
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")


def read_config(model_dir: Path) -> dict[str, Any]:
    """config.json of ``model_dir``; MissingFilesError when the directory or the file is absent."""
    path = model_dir / "config.json"
    if not model_dir.is_dir():
        raise MissingFilesError(str(model_dir), ["the model directory"])
    if not path.is_file():
        raise MissingFilesError(str(model_dir), ["config.json"])
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise MissingFilesError(str(model_dir), ["a readable config.json"], detail=str(exc)) from exc
    if not isinstance(data, dict):
        raise MissingFilesError(str(model_dir), ["a readable config.json"])
    return data


def _index_shards(index: Path) -> set[str]:
    try:
        data = json.loads(index.read_text(encoding="utf-8"))
        return {str(v) for v in data.get("weight_map", {}).values()}
    except (OSError, ValueError, AttributeError):
        return set()


def check_files(model_dir: Path, config: Mapping[str, Any]) -> None:
    """Raise MissingFilesError naming every file a GPTQ model needs that ``model_dir`` lacks."""
    missing: list[str] = []
    names = {p.name for p in model_dir.iterdir() if p.is_file()}
    weights = [n for n in names if n.endswith(_WEIGHT_SUFFIXES) and not n.startswith("training_args")]
    if not weights:
        missing.append("the weight file (*.safetensors)")
    for index in (p for p in model_dir.glob("*.index.json") if p.is_file()):
        missing += sorted(s for s in _index_shards(index) if s not in names)
    if not any(n in names for n in _TOKENIZER_FILES):
        missing.append("the tokenizer (tokenizer.json or tokenizer.model)")
    if "quantize_config.json" not in names and "quantization_config" not in config:
        missing.append("quantize_config.json (GPTQ parameters)")
    if missing:
        raise MissingFilesError(str(model_dir), missing)


def architecture_label(config: Mapping[str, Any]) -> str:
    """The architecture's name as config.json gives it."""
    architectures = config.get("architectures")
    if isinstance(architectures, list) and architectures:
        return str(architectures[0])
    return str(config.get("model_type") or "unknown")


def check_remote_code(model_dir: Path, config: Mapping[str, Any], trust_remote_code: bool) -> bool:
    """RemoteCodeConsentError when ``model_dir`` ships Python code and the user has not consented.

    Any ``auto_map`` or ``*.py`` file counts, whatever the model type: a known ``model_type`` does not
    stop loaders from importing the repo's module (GPTQModel pre-imports ``auto_map`` classes even with
    ``trust_remote_code=False``). Returns whether the folder has such code (then the load may pass
    ``trust_remote_code=True``, as the user allowed it).
    """
    code = find_remote_code(model_dir)
    if code is None and not config.get("auto_map"):
        return False
    if not trust_remote_code:
        raise RemoteCodeConsentError(
            str(model_dir),
            architecture_label(config),
            code=code.summary if code else "auto_map in config.json",
            fingerprint=code.fingerprint if code else "",
        )
    return True


def check_architecture(
    model_dir: Path,
    config: Mapping[str, Any],
    known_model_types: Collection[str],
    trust_remote_code: bool,
    backend: str,
) -> bool:
    """Refuse a model the backend cannot build: remote code without consent, or an unknown architecture.

    ``known_model_types`` are the model types the backend (and transformers) implement themselves.
    The remote-code check comes first and runs for every model. Returns whether the model ships code
    the user allowed to run (the only case in which a loader gets ``trust_remote_code=True``).
    """
    has_code = check_remote_code(model_dir, config, trust_remote_code)
    model_type = str(config.get("model_type") or "")
    if model_type in known_model_types or (has_code and config.get("auto_map")):
        return has_code
    label = architecture_label(config)
    raise UnsupportedArchitectureError(
        f"{backend} cannot load the {label} architecture (model type '{model_type or 'missing'}').",
        "Pick another backend or a model of a supported family.",
    )


def backend_failure(
    model_dir: Path, backend: str, exc: BaseException, *, during: str = "load"
) -> BackendError:
    """A library's unexpected failure, as a sentence naming the model and the backend.

    ``during`` is "load" (a ModelLoadError) or "generate" (a BackendError). The library's own words are
    kept short in the message (the full traceback goes to ``detail``): they are what a bug report needs.
    """
    text = " ".join(str(exc).split())
    said = f": {text[:160]}{'…' if len(text) > 160 else ''}" if text else ""
    what = "failed to load" if during == "load" else "failed while generating with"
    kind = ModelLoadError if during == "load" else BackendError
    return kind(
        f"{backend} {what} the model in {model_dir} ({type(exc).__name__}{said}).",
        "Its files may be damaged or in a form this backend cannot read: download the branch again, "
        "or pick another backend.",
        detail="".join(traceback.format_exception(exc)),
    )


def weight_files_bytes(model_dir: Path) -> int:
    """Bytes of the weight files in ``model_dir``."""
    return sum(p.stat().st_size for p in model_dir.iterdir() if p.is_file() and p.suffix in _WEIGHT_SUFFIXES)


def load_estimate_bytes(model_dir: Path, config: Mapping[str, Any], context: int) -> int:
    """Memory a transformers-style backend needs: weights plus an fp16 KV cache for ``context`` tokens."""
    arch: Architecture | None = architecture_from_config(config)
    cache = kv_cache_bytes(arch, context, CacheType.FP16) if arch else 0
    return weight_files_bytes(model_dir) + cache


def context_length(config: Mapping[str, Any], requested: int | None) -> int:
    """The context to run at: the user's choice capped at the model's maximum, else the maximum."""
    arch = architecture_from_config(config)
    maximum = arch.max_context if arch else 2048
    return min(requested, maximum) if requested else maximum


def check_ram(estimate: int) -> None:
    """OutOfMemoryError when ``estimate`` bytes exceed the system RAM available now."""
    available = int(psutil.virtual_memory().available)
    if estimate > available:
        raise OutOfMemoryError("system", estimate, available)


def check_cancel(cancel: threading.Event | None, what: str = "Loading") -> None:
    """LoadCancelledError when the user has cancelled."""
    if cancel is not None and cancel.is_set():
        raise LoadCancelledError(f"{what} was cancelled.")


def rss_bytes() -> int:
    """Resident memory of this process."""
    return int(psutil.Process(os.getpid()).memory_info().rss)


def release_memory() -> None:
    """Collect garbage and hand freed heap pages back to the OS (glibc keeps them otherwise).

    The full collection runs on the main thread only: on a worker thread (the window's chat thread) it
    could finalize Qt objects that belong to the GUI thread, which crashes the process.
    """
    if threading.current_thread() is threading.main_thread():
        gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
