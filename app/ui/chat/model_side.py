"""The model side of the chat page: the picker's entries, loading (progress, success, failure), the
settings panel, the template override and the prompt preview. It drives the page's components through
their methods and listens to their signals and the chat thread's; it owns no widget.

Load errors end in :meth:`ModelSide.load_failed`: the one place a failed load is explained to the
user (a consent or a dependency check added later belongs there too).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject

from app.chat.profiles import EffectiveSettings, ModelSettings, Profile, effective_settings
from app.chat.session_setup import LocalTarget
from app.ui.chat.model_bar import PickerEntry, endpoint_entries, list_local_targets, same_entry
from app.ui.chat.settings_panel import RELOAD_FIELDS, layer_with
from app.ui.chat.template_bar import PromptPreviewDialog
from app.ui.chat.worker_data import ChatState, LoadedInfo, LoadRequest
from app.ui.workers import start_worker

if TYPE_CHECKING:
    from app.chat.engine import PromptPreview
    from app.downloads.registry import LocalModel
    from app.ui.chat.page import ChatPage


def saved_settings(entry: PickerEntry) -> EffectiveSettings | None:
    """Worker body: what the selected model has saved (profile) and says itself (its files), layered;
    None for a server (its settings are known once connected)."""
    from app.chat.model_files import read_model_files
    from app.chat.profiles import ProfileStore, local_profile_key, model_layer

    if entry.local is None:
        return None
    files = read_model_files(entry.local.model_dir)
    repo = entry.local.repo_id or files.repo_id
    branch = entry.local.branch or files.branch
    key = (repo, branch or "main") if repo else local_profile_key(entry.local.model_dir)
    profile = ProfileStore().load(*key).profile
    return effective_settings(model_layer(files), profile.settings, ModelSettings())


class ModelSide(QObject):
    """Loads models and edits their settings for the page."""

    def __init__(self, page: ChatPage) -> None:
        super().__init__(page)
        self.page = page
        self.loaded_entry: PickerEntry | None = None
        bar, worker = page.model_bar, page.controller.worker
        bar.selection_changed.connect(self._selection_changed)
        bar.load_requested.connect(self.load_selected)
        bar.cancel_requested.connect(page.controller.cancel_load)
        bar.unload_requested.connect(self.unload)
        bar.open_folder_requested.connect(self._open_folder)
        bar.refresh_requested.connect(self.refresh_models)
        bar.new_endpoint_requested.connect(lambda: page.endpoints.edit(None))
        bar.edit_endpoint_requested.connect(page.endpoints.edit)
        bar.test_endpoint_requested.connect(self._test_endpoint)
        bar.backend_chosen.connect(self.override_backend)
        page.endpoints.saved.connect(lambda e: self._list_servers(PickerEntry("", endpoint=e)))
        panel = page.settings_panel
        panel.changed.connect(self._setting_changed)
        panel.save_requested.connect(self.save_settings)
        panel.reset_requested.connect(self.reset_settings)
        panel.reload_requested.connect(self.reload)
        page.template_bar.template_chosen.connect(self._template_chosen)
        page.template_bar.preview_requested.connect(self.show_preview)
        worker.load_progress.connect(self._load_progress)
        worker.loaded.connect(self._loaded)
        worker.load_failed.connect(self.load_failed)
        worker.unloaded.connect(self._unloaded)
        worker.preview_ready.connect(self._preview_ready)
        self._list_servers()
        self._selection_changed()  # nothing loaded yet: the saved values of the selection, or nothing

    # -- the picker -----------------------------------------------------------------------------------

    def refresh_models(self) -> None:
        """Re-list local models (worker) and saved endpoints."""
        page = self.page

        def listed(entries: list[PickerEntry]) -> None:
            if not page.closed:  # the answer may come after the page closed
                page.model_bar.set_local_entries(entries)

        def failed(exc: BaseException) -> None:
            if not page.closed:
                page.errors.report(exc, "listing local models")

        start_worker(
            list_local_targets, page.settings.models_dir, connect={"returned": listed, "errored": failed}
        )
        self._list_servers()

    def _list_servers(self, select: PickerEntry | None = None) -> None:
        from app.errors import QuantDeskError

        try:
            entries = endpoint_entries()
        except QuantDeskError as exc:
            self.page.errors.report(exc, "reading saved endpoints")
            entries = []
        self.page.model_bar.set_server_entries(entries)
        if select is not None:
            self.page.model_bar.select(select)

    def add_model_folder(self, path: Path, label: str | None = None) -> PickerEntry:
        """Offer a model folder in the picker (and select it)."""
        entry = PickerEntry(label or f"{path.name} (folder)", local=LocalTarget(path))
        self.page.model_bar.add_entry(entry)
        return entry

    def _open_folder(self) -> None:
        path = self.page.ask_folder()
        if path is not None:
            self.add_model_folder(path)

    def open_local_model(self, model: LocalModel | Any) -> None:
        """ "Chat with this model": select it and load it."""
        label = f"{model.repo_id}:{model.branch or model.commit[:8]}"
        entry = PickerEntry(label, local=LocalTarget(model.path, model.repo_id, model.branch, model.commit))
        self.page.model_bar.add_entry(entry)
        self.load_selected()

    def _selection_changed(self) -> None:
        self.page.update_enabled()
        if self.page.info is not None or self.page.loading:
            return
        entry = self.page.model_bar.selected_entry()
        if entry is None or entry.local is None:
            self.page.settings_panel.show_saved(None)
            return

        def shown(effective: EffectiveSettings | None) -> None:
            if self.page.closed:  # the answer came after the page closed
                return
            if self.page.info is None and same_entry(self.page.model_bar.selected_entry(), entry):
                self.page.settings_panel.show_saved(effective)

        # An unreadable folder shows nothing here; loading it reports why.
        start_worker(saved_settings, entry, connect={"returned": shown})

    def test_selected_endpoint(self) -> None:
        """ "Test connection" on the picker's endpoint; the result in the status line."""
        entry = self.page.model_bar.selected_entry()
        if entry is not None and entry.endpoint is not None:
            self._test_endpoint(entry.endpoint)

    def _test_endpoint(self, endpoint: Any) -> None:
        bar = self.page.model_bar
        bar.show_progress(None, f"Testing {endpoint.name}…")
        self.page.endpoints.test(endpoint, None, bar.show_result)

    # -- loading --------------------------------------------------------------------------------------

    def load_selected(self) -> None:
        """Load the picker's model (or connect to its server) on the chat thread."""
        page = self.page
        entry = page.model_bar.selected_entry()
        if entry is None or page.loading:
            return
        if page.streaming:
            page.controller.stop()
        if page.info is None or not same_entry(entry, self.loaded_entry):
            page.chat_layer = ModelSettings()
        self.loaded_entry = entry
        self._start_load(entry)

    def _start_load(self, entry: PickerEntry) -> None:
        page = self.page
        page.loading = True
        page.info = None
        page.model_bar.show_loading(entry)
        conversation = page.conversation_side.conversation_to_continue()
        request = LoadRequest(
            local=entry.local, endpoint=entry.endpoint, chat_layer=page.chat_layer, conversation=conversation
        )
        page.controller.load(request)
        page.update_enabled()

    def reload(self) -> None:
        """Load the same model again with the settings now shown."""
        if self.loaded_entry is not None and not self.page.loading:
            self._start_load(self.loaded_entry)

    def unload(self) -> None:
        """Free the model."""
        if self.page.streaming:
            self.page.controller.stop()
        self.page.controller.unload()

    def _load_progress(self, fraction: float, text: str) -> None:
        if self.page.loading:
            self.page.model_bar.show_progress(fraction, text)

    def _loaded(self, info: LoadedInfo) -> None:
        page = self.page
        page.loading = False
        page.info = info
        entry = self.loaded_entry
        title = entry.label if entry is not None and entry.local is not None else info.title
        page.model_bar.show_loaded(title, info)
        page.settings_panel.show_settings(info.effective, remote=info.remote)
        page.settings_panel.setEnabled(True)
        if info.profile_warning:
            page.errors.report_message(info.profile_warning, context="reading the model's settings")
        page.model_loaded.emit(info)
        page.load_finished.emit(True)
        page.update_enabled()

    def load_failed(self, exc: BaseException) -> None:
        """A load ended without a model: say why (a cancel is no error) and leave the page usable."""
        from app.errors import LoadCancelledError, RemoteCodeConsentError
        from app.ui.consent_dialog import ask_and_allow

        page = self.page
        page.loading = False
        page.info = None
        if isinstance(exc, LoadCancelledError):
            page.model_bar.show_unloaded("No model loaded (the load was cancelled)")
        else:
            page.model_bar.show_unloaded()
            # A model that ships its own code: ask, and on "yes" record the consent and load again.
            if not (
                isinstance(exc, RemoteCodeConsentError)
                and ask_and_allow(
                    page, exc, self.reload, lambda e: page.errors.report(e, "loading the model")
                )
            ):
                page.errors.report(exc, "loading the model")
        page.settings_panel.setEnabled(False)
        page.load_finished.emit(False)
        page.update_enabled()
        self._selection_changed()

    def _unloaded(self) -> None:
        page = self.page
        page.info = None
        page.model_bar.show_unloaded()
        page.template_bar.show_template(None)
        page.budget.set_budget(None)
        page.settings_panel.setEnabled(False)
        page.conversation_side.model_gone()
        page.update_enabled()
        self._selection_changed()

    def override_backend(self, name: str) -> None:
        """Reload with another backend (this chat's choice)."""
        self.page.chat_layer = layer_with(self.page.chat_layer, "backend", None if name == "auto" else name)
        self.reload()

    # -- settings -------------------------------------------------------------------------------------

    def _setting_changed(self, name: str) -> None:
        page = self.page
        value = page.settings_panel.value(name)
        if name == "backend" and value == "auto":
            value = None if page.info and page.info.profile_settings.backend is None else "auto"
        page.chat_layer = layer_with(page.chat_layer, name, value)
        if name not in RELOAD_FIELDS:
            self._apply_session_settings()

    def effective(self) -> EffectiveSettings:
        """The effective settings now (defaults < model < profile < this chat)."""
        info = self.page.info
        assert info is not None
        return effective_settings(info.model_settings, info.profile_settings, self.page.chat_layer)

    def _apply_session_settings(self) -> None:
        from app.chat.session_setup import chat_settings

        if self.page.info is not None:
            self.page.controller.apply_settings(chat_settings(self.effective()))

    def save_settings(self) -> None:
        """Store this chat's settings in the model's profile ("Save settings for this model")."""
        page, info = self.page, self.page.info
        if info is None:
            return
        profile = page.profiles.update(info.profile_repo, info.profile_branch, page.chat_layer)
        page.chat_layer = ModelSettings()
        page.info = replace(info, profile_settings=profile.settings, chat_layer=page.chat_layer)
        page.settings_panel.show_settings(self.effective(), remote=info.remote)

    def reset_settings(self) -> None:
        """Forget the profile's settings and this chat's ("Reset to model defaults")."""
        page, info = self.page, self.page.info
        if info is None:
            return
        current = page.profiles.load(info.profile_repo, info.profile_branch).profile
        page.profiles.save(Profile(current.repo_id, current.branch, ModelSettings(), current.measured))
        page.chat_layer = ModelSettings()
        page.info = replace(info, profile_settings=ModelSettings(), chat_layer=page.chat_layer)
        page.settings_panel.show_settings(self.effective(), remote=info.remote)
        self._apply_session_settings()

    # -- template -------------------------------------------------------------------------------------

    def _template_chosen(self, name: str) -> None:
        self.page.chat_layer = layer_with(self.page.chat_layer, "template", name or None)
        self.page.controller.set_template(name)

    def show_template(self, state: ChatState) -> None:
        """The template of a state from the chat thread (kept when the state carries none)."""
        if state.template is not None:
            self.page.template_bar.show_template(state.template)

    def show_preview(self) -> None:
        """Ask the chat thread for the exact prompt; the dialog opens when it arrives."""
        if self.page.info is not None:
            self.page.controller.preview(self.page.composer.text().strip() or None)

    def _preview_ready(self, preview: PromptPreview) -> None:
        dialog = PromptPreviewDialog(preview, self.page)
        self.page.preview_dialog = dialog
        dialog.open()
        self.page.preview_shown.emit(preview)
