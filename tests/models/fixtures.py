"""Session fixtures for the real test models (see ``tests.models.build``), imported by tests/conftest.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from app.backends.base import LoadedModel, LoadSettings
from app.backends.gptqmodel import GPTQModelRules
from tests.models.build import TINY_BRANCHES, ensure_built

TINY_MAIN = "gptq-4bit-32g-actorder_True"
SMOLLM2_BRANCH = "gptq-4bit-128g"


@pytest.fixture(scope="session")
def tiny_models() -> dict[str, Path]:
    """The tiny Llama's GPTQ branches (name -> directory), built once and cached."""
    root = ensure_built("tiny")
    return {name: root / name for name in TINY_BRANCHES}


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    """SmolLM2-135M-Instruct quantized to GPTQ 4-bit g128, built once and cached."""
    return ensure_built("smollm2") / SMOLLM2_BRANCH


@pytest.fixture(scope="session")
def tiny_gptqmodel(tiny_models: dict[str, Path]) -> Iterator[LoadedModel]:
    """The tiny 4-bit g32 act-order model loaded by GPTQModel on the CPU, shared by a session."""
    model = GPTQModelRules().load(tiny_models[TINY_MAIN], LoadSettings(device="cpu"))
    yield model
    model.unload()
