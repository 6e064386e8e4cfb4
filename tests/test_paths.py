"""QUANTDESK_HOME relocates every path QuantDesk writes."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.paths import app_paths


def test_quantdesk_home_relocates_config_data_and_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QUANTDESK_HOME", str(tmp_path / "qd"))
    paths = app_paths()
    for path in (
        paths.config_dir,
        paths.data_dir,
        paths.cache_dir,
        paths.catalog_cache_dir,
        paths.models_dir,
    ):
        assert tmp_path / "qd" in path.parents


def test_default_paths_are_per_user_dirs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QUANTDESK_HOME")
    paths = app_paths()
    assert "QuantDesk" in str(paths.data_dir)
    assert paths.cache_dir != paths.data_dir
