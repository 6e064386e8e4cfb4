"""QuantDesk's preferences and window state, kept in one INI file under the config directory.

QSettings in IniFormat at ``app_paths().config_dir / "quantdesk.ini"`` so that ``QUANTDESK_HOME``
relocates it like every other file (tests get their own).
"""

from __future__ import annotations

import json
from pathlib import Path

from PySide6.QtCore import QByteArray, QSettings

from app.catalog.vram import CacheType
from app.paths import app_paths

HISTORY_SIZE = 12
DEFAULT_CONTEXT = 4096
DEFAULT_PARALLEL_DOWNLOADS = 2
DEFAULT_DOWNLOAD_CONNECTIONS = 8
MAX_DOWNLOAD_CONNECTIONS = 16
SUGGESTED_REPOS = (
    "TheBloke/Llama-2-70B-GPTQ",
    "TheBloke/CausalLM-7B-GPTQ",
    "TheBloke/guanaco-13B-GPTQ",
)


def settings_path() -> Path:
    """The INI file (read on every call so that a changed ``QUANTDESK_HOME`` is honoured)."""
    return app_paths().config_dir / "quantdesk.ini"


def _as_bool(value: object, default: bool) -> bool:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def _as_int(value: object, default: int) -> int:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return default


class UiSettings:
    """Typed access to the settings file; every setter writes through."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or settings_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.qsettings = QSettings(str(self.path), QSettings.Format.IniFormat)

    def sync(self) -> None:
        """Flush to disk."""
        self.qsettings.sync()

    # -- preferences (Settings page) ----------------------------------------------------------------

    @property
    def models_dir(self) -> Path:
        """Where new downloads go."""
        value = self.qsettings.value("settings/models_dir")
        return Path(str(value)) if value else app_paths().models_dir

    @models_dir.setter
    def models_dir(self, path: Path) -> None:
        self.qsettings.setValue("settings/models_dir", str(path))

    @property
    def parallel_downloads(self) -> int:
        """How many downloads run at once."""
        return max(
            1,
            min(8, _as_int(self.qsettings.value("settings/parallel_downloads"), DEFAULT_PARALLEL_DOWNLOADS)),
        )

    @parallel_downloads.setter
    def parallel_downloads(self, count: int) -> None:
        self.qsettings.setValue("settings/parallel_downloads", int(count))

    @property
    def download_connections(self) -> int:
        """Connections per large file (1-16)."""
        value = _as_int(self.qsettings.value("settings/download_connections"), DEFAULT_DOWNLOAD_CONNECTIONS)
        return max(1, min(MAX_DOWNLOAD_CONNECTIONS, value))

    @download_connections.setter
    def download_connections(self, count: int) -> None:
        self.qsettings.setValue("settings/download_connections", int(count))

    @property
    def auto_resume(self) -> bool:
        """Resume unfinished downloads of the last session without asking."""
        return _as_bool(self.qsettings.value("settings/auto_resume"), False)

    @auto_resume.setter
    def auto_resume(self, enabled: bool) -> None:
        self.qsettings.setValue("settings/auto_resume", bool(enabled))

    @property
    def default_context(self) -> int:
        """Context length the Models page starts with (0: each model's own maximum)."""
        return max(0, _as_int(self.qsettings.value("settings/default_context"), DEFAULT_CONTEXT))

    @default_context.setter
    def default_context(self, tokens: int) -> None:
        self.qsettings.setValue("settings/default_context", int(tokens))

    # -- Models page state ---------------------------------------------------------------------------

    @property
    def repo_history(self) -> list[str]:
        """Recently opened repos, newest first."""
        value = self.qsettings.value("models/history")
        if value is None:
            return []
        items = value if isinstance(value, list) else [value]
        return [str(v) for v in items if str(v).strip()]

    def remember_repo(self, text: str) -> list[str]:
        """Put ``text`` first in the history; returns the new history."""
        history = [text] + [h for h in self.repo_history if h != text]
        history = history[:HISTORY_SIZE]
        self.qsettings.setValue("models/history", history)
        return history

    @property
    def cache_type(self) -> CacheType:
        """The KV cache type last chosen."""
        value = str(self.qsettings.value("models/cache_type", CacheType.FP16.value))
        try:
            return CacheType(value)
        except ValueError:
            return CacheType.FP16

    @cache_type.setter
    def cache_type(self, cache: CacheType) -> None:
        self.qsettings.setValue("models/cache_type", cache.value)

    # -- window state ---------------------------------------------------------------------------------

    def bytes_value(self, key: str) -> QByteArray | None:
        """A saved geometry/state blob."""
        value = self.qsettings.value(key)
        return value if isinstance(value, QByteArray) and not value.isEmpty() else None

    def set_bytes_value(self, key: str, value: QByteArray) -> None:
        """Save a geometry/state blob."""
        self.qsettings.setValue(key, value)

    def column_widths(self, table: str) -> dict[str, int]:
        """The widths the user gave ``table``'s columns, by column key (none saved, or unreadable: {})."""
        try:
            saved = json.loads(str(self.qsettings.value(f"{table}/column_widths", "{}")))
        except ValueError:
            return {}
        if not isinstance(saved, dict):
            return {}
        return {str(key): width for key, width in saved.items() if isinstance(width, int) and width > 0}

    def set_column_widths(self, table: str, widths: dict[str, int]) -> None:
        """Save the widths the user gave ``table``'s columns."""
        self.qsettings.setValue(f"{table}/column_widths", json.dumps(widths, sort_keys=True))

    def value(self, key: str, default: object = None) -> object:
        """A raw value (for small UI state such as the current page)."""
        return self.qsettings.value(key, default)

    def set_value(self, key: str, value: object) -> None:
        """Store a raw value."""
        self.qsettings.setValue(key, value)
