"""All Qt code: widgets, item models and workers. Nothing outside this package imports Qt."""

from app.ui import pyside_compat

# Before any signal is emitted: see pyside_compat (PySide6 6.12.0 loses a reference to True per emit).
pyside_compat.apply()
