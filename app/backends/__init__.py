"""Inference backends and the logic that chooses between them."""

from __future__ import annotations

from app.backends.base import BackendRules
from app.backends.exllamav2 import ExLlamaV2Rules
from app.backends.gptqmodel import GPTQModelRules

# In order of preference: the first compatible backend is the default choice.
BACKENDS: tuple[BackendRules, ...] = (ExLlamaV2Rules(), GPTQModelRules())


def backend_by_name(name: str) -> BackendRules:
    """Look a backend up by its stable id; raises KeyError for an unknown one."""
    for backend in BACKENDS:
        if backend.name == name:
            return backend
    raise KeyError(name)
