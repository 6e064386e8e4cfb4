"""Whether a backend's packages are present, found from their metadata: nothing is imported."""

from __future__ import annotations

import importlib.metadata
import importlib.util

from app.backends.base import Probe


def installed_version(package: str) -> str | None:
    """The installed version of ``package``, or None when it is absent."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def importable(module: str) -> bool:
    """Whether ``module`` could be imported (without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def torch_has_cuda() -> bool:
    """Whether the installed torch is a CUDA build (its version carries no "+cpu" local tag)."""
    version = installed_version("torch")
    return version is not None and "+cpu" not in version


def package_probe(
    module: str, display: str, tested_prefix: str, needs: tuple[str, ...] = (), extra: str = ""
) -> Probe:
    """A Probe for a backend that is the Python package ``module`` (plus the packages in ``needs``)."""
    version = installed_version(module)
    if version is None or not importable(module):
        hint = f" Install QuantDesk with the '{extra}' extra." if extra else ""
        return Probe(False, f"{display} is not installed.{hint}")
    for dependency in needs:
        if not importable(dependency):
            return Probe(False, f"{display} needs {dependency}, which is not installed.", version)
    if not version.startswith(tested_prefix):
        return Probe(
            True, f"{display} {version} is installed (QuantDesk is tested with {tested_prefix}x).", version
        )
    return Probe(True, f"{display} {version} is installed.", version)
