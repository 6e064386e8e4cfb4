"""How a chat is put together, shared by ``quantdesk chat`` and the chat page (Qt-free).

A local model: read its folder's small files, key its profile (repo + branch, or the folder), layer the
settings (defaults < model < profile < this chat), detect the template, choose a backend the way the
catalog does, load, record the memory measured, and build the session's :class:`ChatSettings` and the
conversation's :class:`ChatMeta`. (A saved endpoint's chat is put together in :mod:`app.remote.endpoints`.)

Nothing heavy is imported at module level: a backend (torch, gptqmodel) loads only in :func:`load_local`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.chat.conversation import ChatMeta
from app.chat.detection import TemplateChoice, detect_for_model
from app.chat.engine import ChatSettings
from app.chat.model_files import ModelFiles, local_branch_info, read_model_files
from app.chat.profiles import (
    EffectiveSettings,
    MeasuredMemory,
    ModelSettings,
    Profile,
    ProfileStore,
    effective_settings,
    local_profile_key,
    model_layer,
)
from app.chat.templates import load_user_templates

if TYPE_CHECKING:
    from app.backends import Selection
    from app.backends.base import LoadedModel, LoadSettings, Sampling
    from app.backends.memory_meter import PeakMeter
    from app.catalog.measured import MeasuredPeak, MeasuredStore
    from app.hardware import Hardware


@dataclass(frozen=True)
class LocalTarget:
    """A model folder and what is known of its origin (the registry knows a cache snapshot's branch)."""

    model_dir: Path
    repo_id: str | None = None
    branch: str | None = None
    commit: str | None = None


@dataclass(frozen=True)
class ChatPlan:
    """Everything decided before a local model is loaded."""

    target: LocalTarget
    files: ModelFiles
    profile_repo: str
    profile_branch: str
    profile: Profile
    profile_warning: str | None
    model_settings: ModelSettings  # what the model's own files suggest
    chat_layer: ModelSettings
    effective: EffectiveSettings
    choice: TemplateChoice

    @property
    def title(self) -> str:
        """``org/name:branch`` or the folder name."""
        if self.target.repo_id:
            return f"{self.target.repo_id}:{self.target.branch or 'main'}"
        return self.files.model_dir.name


def plan_local_chat(
    target: LocalTarget, chat_layer: ModelSettings | None = None, profiles: ProfileStore | None = None
) -> ChatPlan:
    """Read the folder, load the profile, layer the settings and detect the template.

    An unknown template in ``chat_layer`` raises TemplateNotFoundError here, before anything loads.
    """
    chat_layer = chat_layer or ModelSettings()
    profiles = profiles or ProfileStore()
    files = read_model_files(target.model_dir)
    files = replace(
        files,
        repo_id=target.repo_id or files.repo_id,
        branch=target.branch or files.branch,
        commit=target.commit or files.commit,
    )
    repo_id, branch = (
        (files.repo_id, files.branch or "main") if files.repo_id else local_profile_key(target.model_dir)
    )
    loaded = profiles.load(repo_id, branch)
    profile_settings = loaded.profile.settings
    choice = detect_for_model(
        files,
        chat_override=chat_layer.template,
        profile_override=profile_settings.template,
        user_templates=load_user_templates(),
    )
    own = model_layer(files)
    return ChatPlan(
        target=target,
        files=files,
        profile_repo=repo_id,
        profile_branch=branch,
        profile=loaded.profile,
        profile_warning=loaded.warning,
        model_settings=own,
        chat_layer=chat_layer,
        effective=effective_settings(own, profile_settings, chat_layer),
        choice=choice,
    )


def select_backend(
    files: ModelFiles, backend_name: str | None, hardware: Hardware | None = None
) -> Selection:
    """Choose a backend the way the catalog does: ``backend_name`` None/"auto", or an override that is
    refused (BackendRefusedError) with its reason when it cannot work."""
    from app.backends import select
    from app.hardware import detect_hardware

    override = None if backend_name in (None, "auto") else backend_name
    return select(local_branch_info(files), hardware or detect_hardware(), override)


def memory_estimate(selection: Selection, files: ModelFiles, context: int | None, cache: Any) -> int | None:
    """The chosen backend's estimate in bytes at ``context`` tokens (None when the shape is unknown)."""
    from app.catalog.vram import CacheType

    branch = local_branch_info(files)
    tokens = context or files.context_length or 2048
    estimate = selection.backend.memory_estimate(branch, tokens, CacheType(cache))
    if estimate is None:
        return None
    if selection.backend.runs_on_cpu and not _has_gpu():
        return estimate.allocated  # RAM: no CUDA context, no caching-allocator slack
    return estimate.total


def _has_gpu() -> bool:
    from app.hardware import detect_hardware

    return detect_hardware().has_cuda_gpu


def load_local(
    selection: Selection,
    files: ModelFiles,
    settings: LoadSettings,
    progress: Callable[[float, str], None] | None = None,
    cancel: threading.Event | None = None,
) -> LoadedModel:
    """Load the folder with the selected backend (typed ModelLoadError on failure).

    A folder that ships its own Python code loads only with the consent recorded for it
    (:mod:`app.backends.remote_code`; RemoteCodeConsentError otherwise, before any backend import),
    whatever ``settings.trust_remote_code`` says. The libraries' banners and logs during the import
    and the load go to the log file (:func:`app.logging_setup.library_output`).
    """
    from app.backends.preflight import backend_failure, check_remote_code, read_config
    from app.backends.remote_code import remote_code_allowed
    from app.errors import QuantDeskError
    from app.logging_setup import library_output

    allowed = remote_code_allowed(files.model_dir)
    check_remote_code(files.model_dir, read_config(files.model_dir), allowed)
    settings = replace(settings, trust_remote_code=allowed)
    try:
        with library_output():
            return selection.backend.load(files.model_dir, settings, progress, cancel)
    except QuantDeskError:
        raise
    except Exception as exc:  # an import or load failure inside the library, as one sentence
        raise backend_failure(files.model_dir, selection.backend.display_name, exc) from exc


def record_memory(profiles: ProfileStore, plan: ChatPlan, model: LoadedModel) -> Profile:
    """Store the memory measured after the load in the model's profile (the chat page shows it). The
    peak after a reply, which the catalog corrects its estimates with, is :class:`PeakRecorder`'s."""
    return profiles.record_memory(
        plan.profile_repo,
        plan.profile_branch,
        MeasuredMemory(model.backend, int(model.memory_bytes), int(model.context_length)),
    )


def start_peak_meter(model: LoadedModel) -> PeakMeter:
    """A meter started right after the load: pass it to :func:`record_peak` after the first reply."""
    from app.backends.memory_meter import PeakMeter

    return PeakMeter.for_model(model)


def record_peak(
    plan: ChatPlan,
    model: LoadedModel,
    meter: PeakMeter,
    prompt_tokens: int,
    cache_type: str,
    store: MeasuredStore | None = None,
) -> MeasuredPeak:
    """Keep the peak since ``meter`` started, keyed by model + branch + backend + context + cache.

    Local folders without a known repo are keyed by the profile's folder key, as their settings are.
    """
    from app.catalog.measured import MeasuredPeak, MeasuredStore

    measurement = MeasuredPeak(
        repo_id=plan.profile_repo,
        branch=plan.profile_branch,
        backend=model.backend,
        context=int(model.context_length),
        cache_type=str(cache_type),
        prompt_tokens=max(1, int(prompt_tokens)),
        peak_bytes=meter.peak_bytes(),
        device=meter.device,
        reserved_bytes=meter.peak_reserved_bytes(),
    )
    (store or MeasuredStore()).record(measurement)
    return measurement


def chat_settings(effective: EffectiveSettings, files: ModelFiles | None = None) -> ChatSettings:
    """The session's settings from the effective values."""
    return ChatSettings(
        system_prompt=effective.value("system_prompt"),
        sampling=effective.sampling(),
        extra_stop_strings=tuple(effective.value("extra_stop_strings") or ()),
        add_bos=files is not None and files.add_bos_token is True,
    )


def sampler_dict(sampling: Sampling) -> dict[str, Any]:
    """The sampler as saved with a conversation."""
    return {
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "top_k": sampling.top_k,
        "min_p": sampling.min_p,
        "repetition_penalty": sampling.repetition_penalty,
        "max_new_tokens": sampling.max_new_tokens,
        "seed": sampling.seed,
    }


class PeakRecorder:
    """After every reply, keeps the peak memory since the load with the longest prompt so far
    (:func:`record_peak`); a failure to write is a warning, never the end of the chat."""

    def __init__(
        self, plan: ChatPlan, model: LoadedModel, cache_type: str, store: MeasuredStore | None = None
    ) -> None:
        self.plan, self.model, self.cache_type, self.store = plan, model, str(cache_type), store
        self.meter = start_peak_meter(model)
        self.longest_prompt = 0

    def after_reply(self, prompt_tokens: int) -> str | None:
        """Record the peak; returns a sentence to show when it could not be kept."""
        self.longest_prompt = max(self.longest_prompt, int(prompt_tokens))
        try:
            record_peak(self.plan, self.model, self.meter, self.longest_prompt, self.cache_type, self.store)
        except OSError as exc:
            return f"The memory this model used could not be saved ({exc}); estimates stay formula-only."
        return None


def local_meta(target: LocalTarget, backend: str, choice: TemplateChoice, settings: ChatSettings) -> ChatMeta:
    """Which model, template and sampler a local conversation used."""
    return ChatMeta(
        repo_id=target.repo_id,
        branch=target.branch,
        commit=target.commit,
        model_dir=str(target.model_dir),
        backend=backend,
        template=choice.name,
        template_source=str(choice.source),
        sampler=sampler_dict(settings.sampling),
    )
