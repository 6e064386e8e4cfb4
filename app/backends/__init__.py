"""Inference backends and the logic that chooses between them.

Importing this package is cheap: the backends' libraries (torch, gptqmodel, exllamav2) are imported
only when a model is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.backends.base import Backend, Compatibility
from app.backends.exllamav2 import ExLlamaV2Rules
from app.backends.gptqmodel import GPTQModelRules
from app.catalog.branch import BranchInfo
from app.errors import BackendRefusedError, NoCompatibleBackendError
from app.hardware import Hardware

# In order of preference: the first compatible backend is the default choice.
BACKENDS: tuple[Backend, ...] = (ExLlamaV2Rules(), GPTQModelRules())


def backend_by_name(name: str) -> Backend:
    """Look a backend up by its stable id; raises KeyError for an unknown one."""
    for backend in BACKENDS:
        if backend.name == name:
            return backend
    raise KeyError(name)


@dataclass(frozen=True)
class Considered:
    """One backend's verdict during selection."""

    name: str
    display_name: str
    compatibility: Compatibility


@dataclass(frozen=True)
class Selection:
    """The backend to use and why, with every backend's verdict (in order of preference)."""

    backend: Backend
    reason: str
    considered: tuple[Considered, ...]
    overridden: bool = False


def assess(backend: Backend, branch: BranchInfo, environment: Hardware) -> Compatibility:
    """The backend's rules for this branch here, then whether its library can actually run."""
    verdict = backend.compatibility(branch, environment)
    if not verdict.compatible or environment.planned:
        return verdict  # planned hardware is hypothetical: the installed packages do not matter
    probe = backend.probe()
    if not probe.available:
        return Compatibility(False, probe.reason)
    return verdict


def select(branch: BranchInfo, environment: Hardware, override: str | None = None) -> Selection:
    """Choose a backend for ``branch`` on ``environment``: the first compatible one, or the user's.

    ExLlamaV2 wins when CUDA and exllamav2 are present, the branch is 4-bit GPTQ and its architecture
    is supported; GPTQModel serves everything else. An ``override`` that cannot work raises
    BackendRefusedError with its reason; no compatible backend raises NoCompatibleBackendError listing
    every reason.
    """
    considered = tuple(Considered(b.name, b.display_name, assess(b, branch, environment)) for b in BACKENDS)
    by_name = {b.name: b for b in BACKENDS}
    if override:
        if override not in by_name:
            known = ", ".join(by_name)
            raise BackendRefusedError(f"There is no backend called '{override}'.", f"Choose one of: {known}.")
        verdict = next(c for c in considered if c.name == override)
        if not verdict.compatibility.compatible:
            raise BackendRefusedError(
                f"{verdict.display_name} cannot run {branch.repo_id}:{branch.branch}: "
                f"{verdict.compatibility.reason}",
                "Choose another backend, or let QuantDesk pick one.",
            )
        return Selection(by_name[override], verdict.compatibility.reason, considered, overridden=True)
    for verdict in considered:
        if verdict.compatibility.compatible:
            return Selection(by_name[verdict.name], verdict.compatibility.reason, considered)
    reasons = " ".join(f"{c.display_name}: {c.compatibility.reason}" for c in considered)
    raise NoCompatibleBackendError(f"No backend can run {branch.repo_id}:{branch.branch} here.", reasons)


__all__ = ["BACKENDS", "Considered", "Selection", "backend_by_name", "select"]
