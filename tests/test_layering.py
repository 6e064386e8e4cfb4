"""Architecture rules: the core never imports Qt, and the catalog/CLI never import torch or a backend."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
QT_MODULES = ("PySide6", "qasync", "shiboken6")
HEAVY_MODULES = ("torch", "gptqmodel", "exllamav2", "transformers")


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _qt_importers(files: list[Path], base: Path = ROOT) -> list[str]:
    return [
        str(path.relative_to(base))
        for path in files
        if any(name.split(".")[0] in QT_MODULES for name in _imported_modules(path))
    ]


def test_no_qt_outside_ui_and_main() -> None:
    core = [p for p in (ROOT / "app").rglob("*.py") if (ROOT / "app" / "ui") not in p.parents]
    assert core, "the scan found no core modules"
    assert _qt_importers(core) == []


def test_layering_check_detects_a_qt_import(tmp_path: Path) -> None:
    offender = tmp_path / "bad.py"
    offender.write_text("def f():\n    from PySide6.QtCore import QObject\n    return QObject\n")
    clean = tmp_path / "good.py"
    clean.write_text("import json\n")
    assert _qt_importers([offender, clean], tmp_path) == ["bad.py"]


def test_catalog_and_cli_do_not_import_torch_or_backends() -> None:
    code = (
        "import sys, json, app.cli, app.catalog.service, app.catalog.table, app.backends;"
        f"print(json.dumps([m for m in {HEAVY_MODULES!r} if m in sys.modules]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert json.loads(result.stdout) == []


# Each floor imports only what stands below it (ARCHITECTURE.md): the chat engine and the backends know
# nothing of servers; the remote client knows nothing of QuantDesk's own server.
FLOOR_RULES = {
    "app/chat": ("app.remote", "app.serve", "app.cli", "app.ui"),
    "app/backends": ("app.remote", "app.serve", "app.chat", "app.cli", "app.ui"),
    "app/remote": ("app.serve", "app.cli", "app.ui"),
    "app/serve": ("app.cli", "app.ui"),
}


def _upward_imports(folder: Path, forbidden: tuple[str, ...], base: Path = ROOT) -> list[str]:
    found = []
    for path in sorted(folder.rglob("*.py")):
        for name in _imported_modules(path):
            if any(name == f or name.startswith(f + ".") for f in forbidden):
                found.append(f"{path.relative_to(base)} imports {name}")
    return found


def test_no_import_runs_up_a_floor() -> None:
    offenders = [
        line for floor, forbidden in FLOOR_RULES.items() for line in _upward_imports(ROOT / floor, forbidden)
    ]
    assert offenders == []


def test_floor_check_detects_an_upward_import(tmp_path: Path) -> None:
    (tmp_path / "engine.py").write_text("def f():\n    from app.remote.wire import api_url\n")
    assert _upward_imports(tmp_path, ("app.remote",), tmp_path) == ["engine.py imports app.remote.wire"]
