"""Where QuantDesk keeps its files.

Every config, data and cache path goes through this module so that ``QUANTDESK_HOME`` can relocate
all of them at once (tests always point it at a temporary directory).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import platformdirs

APP_NAME = "QuantDesk"
HOME_ENV = "QUANTDESK_HOME"


@dataclass(frozen=True)
class AppPaths:
    """The three roots QuantDesk writes under."""

    config_dir: Path
    data_dir: Path
    cache_dir: Path

    @property
    def catalog_cache_dir(self) -> Path:
        """Cached branch tables, one JSON file per repo."""
        return self.cache_dir / "catalog"

    @property
    def models_dir(self) -> Path:
        """Default folder downloaded models go to."""
        return self.data_dir / "models"


def app_paths() -> AppPaths:
    """Return the current paths, honouring ``QUANTDESK_HOME`` (read on every call, not cached)."""
    home = os.environ.get(HOME_ENV)
    if home:
        root = Path(home).expanduser()
        return AppPaths(config_dir=root / "config", data_dir=root / "data", cache_dir=root / "cache")
    return AppPaths(
        config_dir=Path(platformdirs.user_config_dir(APP_NAME, appauthor=False)),
        data_dir=Path(platformdirs.user_data_dir(APP_NAME, appauthor=False)),
        cache_dir=Path(platformdirs.user_cache_dir(APP_NAME, appauthor=False)),
    )
