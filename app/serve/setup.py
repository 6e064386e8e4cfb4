"""Put a model folder on the server: plan it as a chat would, load it, and offer it (Qt-free).

The same planning as ``quantdesk chat`` (:mod:`app.chat.session_setup`): the model's profile, template
and settings become the defaults every request starts from.
"""

from __future__ import annotations

from app.backends.base import LoadedModel
from app.chat.session_setup import ChatPlan, chat_settings
from app.serve.service import ServedModel


def model_id(plan: ChatPlan) -> str:
    """The id clients name the model by: ``org/name:branch``, or the folder's name."""
    return plan.title


def served_model(plan: ChatPlan, model: LoadedModel) -> ServedModel:
    """The loaded model as the server offers it: its template and profile settings as defaults."""
    return ServedModel.create(model_id(plan), model, plan.choice, chat_settings(plan.effective, plan.files))
