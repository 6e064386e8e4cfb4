"""Loading a model for the chat thread: a local folder or a saved OpenAI-compatible endpoint.

Plain functions, run on the chat thread by :meth:`app.ui.chat.worker.ChatWorker.load`: each returns a
:class:`LoadedSession`, everything the worker keeps (the session, the model, the plan, the detected
template, the peak recorder) plus the :class:`LoadedInfo` the page shows. A load that fails after the
model is up unloads that model before the error goes on, so nothing is left holding memory.

Every heavy import (the engine, the backends, torch through them, the remote client) sits inside the
functions: the GUI imports none of them until the user loads a model (tests/test_layering.py and the
startup tests check ``sys.modules``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from app.chat.profiles import ProfileStore
from app.chat.session_setup import PeakRecorder
from app.ui.chat.worker_data import BackendOption, LoadedInfo, LoadRequest

if TYPE_CHECKING:
    from app.backends.base import LoadedModel
    from app.chat.detection import TemplateChoice
    from app.chat.engine import ChatSession
    from app.chat.session_setup import ChatPlan
    from app.chat.storage import ChatStore

Progress = Callable[[float, str], None]


@dataclass(frozen=True)
class LoadedSession:
    """A loaded model with its chat session: what the worker keeps, and what the page is told."""

    session: ChatSession
    model: LoadedModel
    plan: ChatPlan | None  # None for an endpoint (its templates come from the server's side)
    detected: TemplateChoice  # the template chosen at load (an override can go back to it)
    peaks: PeakRecorder | None  # keeps the peak memory after each reply (local models only)
    info: LoadedInfo


@contextmanager
def _unloaded_on_failure(model: LoadedModel) -> Iterator[None]:
    """Unload ``model`` if the rest of the load fails (the error goes on)."""
    try:
        yield
    except BaseException:
        model.unload()
        raise


def load_local_model(
    request: LoadRequest,
    profiles: ProfileStore,
    store: ChatStore,
    progress: Progress,
    cancel: threading.Event,
) -> LoadedSession:
    """Load ``request.local`` with the backend its settings select and start a chat session on it.

    The session's replies take their turn at a :class:`~app.serve.gate.ModelGate` that the local server
    shares when the user serves this model ("Serve this model"): never both at once. ``cancel`` stops
    the load; ``progress`` gets (fraction, what is happening).
    """
    from app.backends.cpu_threads import leave_a_core_for_the_window
    from app.chat.engine import ChatSession
    from app.chat.session_setup import (
        chat_settings,
        load_local,
        local_meta,
        memory_estimate,
        plan_local_chat,
        record_memory,
        select_backend,
    )
    from app.serve.gate import GatedModel, ModelGate, Owner
    from app.serve.setup import served_model

    local = request.local
    assert local is not None
    progress(0.0, "Reading the model's files")
    leave_a_core_for_the_window()  # this thread runs the model; the window keeps a core to draw on
    plan = plan_local_chat(local, request.chat_layer, profiles)
    effective = plan.effective
    selection = select_backend(plan.files, str(effective.value("backend")))
    load_settings = effective.load_settings()
    estimate = memory_estimate(selection, plan.files, load_settings.context_length, load_settings.cache_type)
    model = load_local(selection, plan.files, load_settings, progress, cancel)
    with _unloaded_on_failure(model):
        profile = record_memory(profiles, plan, model)
        peaks = PeakRecorder(plan, model, load_settings.cache_type.value)
        settings = chat_settings(effective, plan.files)
        # The chat's replies take their turn at the gate the local server shares (never both at once).
        gate = ModelGate()
        session = ChatSession(GatedModel(model, gate, Owner.GUI), plan.choice, settings=settings, store=store)
        session.conversation.meta = local_meta(local, model.backend, plan.choice, settings)
        progress(1.0, "Loaded")
        info = LoadedInfo(
            title=plan.title,
            remote=False,
            backend=selection.backend.display_name,
            backend_reason=selection.reason,
            backend_overridden=selection.overridden,
            options=tuple(
                BackendOption(c.name, c.display_name, c.compatibility.compatible, c.compatibility.reason)
                for c in selection.considered
            ),
            context_length=model.context_length,
            memory_bytes=int(model.memory_bytes),
            estimate_bytes=estimate,
            load_seconds=model.load_seconds,
            profile_repo=plan.profile_repo,
            profile_branch=plan.profile_branch,
            model_settings=plan.model_settings,
            profile_settings=profile.settings,
            chat_layer=request.chat_layer,
            effective=effective,
            profile_warning=plan.profile_warning,
            served=served_model(plan, model),
            gate=gate,
        )
    return LoadedSession(session, model, plan, plan.choice, peaks, info)


def connect_endpoint(
    request: LoadRequest, profiles: ProfileStore, store: ChatStore, progress: Progress
) -> LoadedSession:
    """Connect to ``request.endpoint`` (its model checked) and start a chat session on it.

    The context length is this chat's setting, else the endpoint's, else the saved profile's; the
    profile is kept under the endpoint's own repo name, one branch per served model.
    """
    from app.chat.engine import ChatSession
    from app.chat.profiles import effective_settings
    from app.chat.session_setup import chat_settings
    from app.remote.endpoints import connect, template_choice
    from app.remote.session import endpoint_profile_repo, remote_meta
    from app.remote.wire import display_url

    endpoint = request.endpoint
    assert endpoint is not None
    where = display_url(endpoint.base_url)
    progress(0.2, f"Connecting to {where}")
    layer = request.chat_layer
    context = layer.context_length or endpoint.context_length
    model = connect(replace(endpoint, context_length=context))
    with _unloaded_on_failure(model):
        repo = endpoint_profile_repo(endpoint)
        loaded = profiles.load(repo, model.model_id)
        profile_settings = loaded.profile.settings
        if not context and profile_settings.context_length:
            model.context_length = profile_settings.context_length
        choice = template_choice(endpoint, layer.template or profile_settings.template)
        effective = effective_settings(None, profile_settings, layer)
        settings = chat_settings(effective)
        session = ChatSession(model, choice, settings=settings, store=store)
        session.conversation.meta = remote_meta(model.model_id, where, choice, settings)
        progress(1.0, "Connected")
        info = LoadedInfo(
            title=f"{endpoint.name}: {model.model_id}",
            remote=True,
            backend="OpenAI-compatible server",
            backend_reason=f"{where} ({choice.detail})",
            backend_overridden=False,
            options=(),
            context_length=model.context_length,
            memory_bytes=0,
            estimate_bytes=None,
            load_seconds=model.load_seconds,
            profile_repo=repo,
            profile_branch=model.model_id,
            model_settings=None,
            profile_settings=profile_settings,
            chat_layer=layer,
            effective=effective,
            profile_warning=loaded.warning,
        )
    return LoadedSession(session, model, None, choice, None, info)
