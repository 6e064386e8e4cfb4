"""What the Models page shows when no table and no results are on it: a welcome, "opening…", or why not.

A first start suggests well-known repos and one search; while a repo opens, or after it could not be
opened, the page has it say so (:meth:`Placeholder.show_opening`, :meth:`Placeholder.show_failure`).
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from app.ui.settings import SUGGESTED_REPOS

SUGGESTED_SEARCH = "llama 70b gptq"
WELCOME_TITLE = "Find a GPTQ model, or browse the quantizations of a repo"
WELCOME_TEXT = (
    "Type a few words above to search the Hub (e.g. llama 70b gptq), or a repo (org/name, "
    "org/name:branch, or its huggingface.co URL) to open it.\n"
    "Every branch is listed with its size, the memory each backend needs and whether it fits."
)


class Placeholder(QFrame):
    """Title, text and the first-start suggestions (repos to open, a search to try)."""

    open_requested = Signal(str)  # a suggested repo id
    search_requested = Signal(str)  # the suggested search words

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setFrameShape(QFrame.Shape.StyledPanel)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(24, 24, 24, 24)
        layout.addStretch(1)
        self.title = QLabel(WELCOME_TITLE)
        font = self.title.font()
        font.setPointSizeF(font.pointSizeF() * 1.3)
        font.setBold(True)
        self.title.setFont(font)
        self.title.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.text = QLabel(WELCOME_TEXT)
        self.text.setWordWrap(True)
        self.text.setAlignment(Qt.AlignmentFlag.AlignCenter)
        layout.addWidget(self.title)
        layout.addWidget(self.text)
        self.suggestions = QWidget()  # two centred rows, so the page stays as narrow as before
        rows = QVBoxLayout(self.suggestions)
        row = QHBoxLayout()
        row.addStretch(1)
        row.addWidget(QLabel("Try one:"))
        self.suggestion_buttons: list[QPushButton] = []
        for repo in SUGGESTED_REPOS:
            button = self._link_button(repo)
            button.clicked.connect(lambda _checked=False, r=repo: self.open_requested.emit(r))
            self.suggestion_buttons.append(button)
            row.addWidget(button)
        row.addStretch(1)
        search_row = QHBoxLayout()
        search_row.addStretch(1)
        search_row.addWidget(QLabel("Or search the Hub:"))
        self.search_suggestion = self._link_button(SUGGESTED_SEARCH)
        self.search_suggestion.clicked.connect(
            lambda _checked=False: self.search_requested.emit(SUGGESTED_SEARCH)
        )
        search_row.addWidget(self.search_suggestion)
        search_row.addStretch(1)
        rows.addLayout(row)
        rows.addLayout(search_row)
        layout.addSpacing(12)
        layout.addWidget(self.suggestions)
        layout.addStretch(2)

    def show_opening(self, repo: str) -> None:
        """Say that ``repo`` is being opened (its branches are read from the Hub)."""
        self.title.setText(f"Opening {repo}…")
        self.text.setText("Reading its branches from the Hub.")
        self.suggestions.hide()

    def show_failure(self, repo: str, reason: str, suggest: bool) -> None:
        """Say that ``repo`` could not be opened (``reason`` in the tooltip: the banner says it);
        ``suggest``: offer the first-start suggestions again."""
        self.title.setText(f"Could not open {repo}")
        self.text.setText(
            "The message above says why. Check the repo id (org/name), or add a Hugging Face token in "
            "Settings for gated and private repos."
        )
        self.text.setToolTip(reason)
        self.suggestions.setVisible(suggest)

    @staticmethod
    def _link_button(text: str) -> QPushButton:
        button = QPushButton(text)
        button.setCursor(Qt.CursorShape.PointingHandCursor)
        return button
