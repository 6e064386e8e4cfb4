"""The Models page's search-or-open box: an exact ``org/name``, ``org/name:branch`` or Hub URL opens the
repo, anything else searches the Hub.

Enter (or picking a repo from the history list, or "Search / Open") asks to open or to search; typing
words asks for a debounced search, typing a repo id drops a pending one (it opens on Enter). "Refresh"
asks to fetch the shown repo again.
"""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QPushButton, QSizePolicy, QToolButton, QWidget

from app.catalog.search_query import opens_a_repo
from app.ui.settings import SUGGESTED_REPOS


class RepoBar(QWidget):
    """ "Model" label, the editable search-or-open box (its list: recent repos), Search / Open, Refresh."""

    open_requested = Signal(str)  # text that names a repo, as typed
    search_requested = Signal(str)  # words to search for now
    search_typed = Signal(str)  # words to search for after a pause in typing ("" drops a pending search)
    refresh_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        top = QHBoxLayout(self)
        top.setContentsMargins(0, 0, 0, 0)
        top.setSpacing(8)  # the page's spacing (the row was once a layout nested in the page's)
        self.box = QComboBox()
        self.box.setEditable(True)
        self.box.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        self.box.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.box.setMinimumContentsLength(36)
        line = self.box.lineEdit()
        assert line is not None
        line.setPlaceholderText("Search models (e.g. llama 70b gptq) or open org/name[:branch] or a URL")
        line.setClearButtonEnabled(True)
        line.returnPressed.connect(self._submit)
        line.textEdited.connect(self._edited)
        self.box.activated.connect(lambda _i: self._submit())
        self.open_button = QPushButton("Search / Open")
        self.open_button.setDefault(True)
        self.open_button.clicked.connect(self._submit)
        self.refresh_button = QToolButton()
        self.refresh_button.setText("Refresh")
        self.refresh_button.setToolTip("Fetch the repo again from the Hub")
        self.refresh_button.clicked.connect(lambda _checked=False: self.refresh_requested.emit())
        self.refresh_button.setEnabled(False)
        top.addWidget(QLabel("Model"))
        top.addWidget(self.box, 1)
        top.addWidget(self.open_button)
        top.addWidget(self.refresh_button)

    def set_text(self, text: str) -> None:
        """Show ``text`` in the box (a repo that opens, the words of a search)."""
        self.box.setEditText(text)

    def set_history(self, history: list[str]) -> None:
        """The box's list: the recent repos, or well-known ones before any opened; the typed text stays."""
        current = self.box.currentText()
        self.box.blockSignals(True)
        self.box.clear()
        self.box.addItems(history or list(SUGGESTED_REPOS))
        self.box.setEditText(current)
        self.box.blockSignals(False)

    def set_refresh_enabled(self, enabled: bool) -> None:
        """Whether "Refresh" can fetch the shown repo again (not while it loads, not with none shown)."""
        self.refresh_button.setEnabled(enabled)

    def _submit(self) -> None:
        text = self.box.currentText().strip()
        if not text:
            return
        if opens_a_repo(text):
            self.open_requested.emit(text)
        else:
            self.search_requested.emit(text)

    def _edited(self, text: str) -> None:
        # A repo id opens on Enter: it drops a pending search rather than searching for its words.
        self.search_typed.emit("" if opens_a_repo(text) else text)
