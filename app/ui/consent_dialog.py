"""The question asked before a model's own Python code may run: "Run this model's code?".

A model folder that ships code (``auto_map``, ``*.py``) is refused by the load with a
:class:`~app.errors.RemoteCodeConsentError`; the chat page then calls :func:`ask_and_allow`, which asks
with :func:`ask_remote_code_consent` and, on yes, records the consent (for that folder and that exact
code, see :mod:`app.backends.remote_code`) on a worker thread before loading again. "Don't run it" is
the default button and Esc's answer.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtWidgets import QMessageBox, QWidget

from app.errors import RemoteCodeConsentError
from app.ui.workers import start_worker

ALLOW_TEXT = "Run this model's code"
REFUSE_TEXT = "Don't run it"


def consent_box(parent: QWidget | None, error: RemoteCodeConsentError) -> QMessageBox:
    """The dialog (not shown): what the folder ships, what running it means, and the two answers."""
    box = QMessageBox(parent)
    box.setIcon(QMessageBox.Icon.Warning)
    box.setWindowTitle("Run code shipped with this model?")
    box.setText(f"The model in {error.model_dir} ships its own Python code.")
    shipped = f"It contains: {error.code}.\n\n" if error.code else ""
    box.setInformativeText(
        f"{shipped}Loading it runs that code on this computer with your permissions, like any program "
        "you install. Allow it only if you trust the repo it came from. QuantDesk remembers your answer "
        "for this folder, and asks again if the code changes."
    )
    allow = box.addButton(ALLOW_TEXT, QMessageBox.ButtonRole.AcceptRole)
    refuse = box.addButton(REFUSE_TEXT, QMessageBox.ButtonRole.RejectRole)
    allow.setObjectName("allow")
    refuse.setObjectName("refuse")
    box.setDefaultButton(refuse)
    box.setEscapeButton(refuse)
    return box


def ask_remote_code_consent(parent: QWidget | None, error: RemoteCodeConsentError) -> bool:
    """Ask the user whether the model's code may run; True only on an explicit "Run this model's code"."""
    box = consent_box(parent, error)
    box.exec()
    clicked = box.clickedButton()
    return clicked is not None and clicked.objectName() == "allow"


def _record(model_dir: str, fingerprint: str) -> bool:
    from app.backends.remote_code import allow_remote_code

    return allow_remote_code(Path(model_dir), fingerprint or None)


def ask_and_allow(
    parent: QWidget | None,
    error: RemoteCodeConsentError,
    then: Callable[[], None],
    failed: Callable[[BaseException], object] | None = None,
) -> bool:
    """Ask; on yes record the consent off the GUI thread, then call ``then`` (load again).

    Returns whether the user agreed. If the code changed since the refusal, nothing is recorded and the
    next load asks again (with the new files listed).
    """
    if not ask_remote_code_consent(parent, error):
        return False
    connect: dict[str, Callable[..., object]] = {"returned": lambda _recorded: then()}
    if failed is not None:
        connect["errored"] = failed
    start_worker(_record, error.model_dir, error.fingerprint, connect=connect)
    return True
