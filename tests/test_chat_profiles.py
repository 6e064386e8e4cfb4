"""Profiles: layering with the source of every value, atomic files, corrupt-file recovery."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.backends.base import Sampling
from app.catalog.vram import CacheType
from app.chat.model_files import ModelFiles
from app.chat.profiles import (
    APP_DEFAULTS,
    MeasuredMemory,
    ModelSettings,
    Profile,
    ProfileStore,
    SettingSource,
    effective_settings,
    local_profile_key,
    model_layer,
    settings_from_dict,
)

REPO, BRANCH = "TheBloke/Llama-2-7B-Chat-GPTQ", "gptq-4bit-32g-actorder_True"


def test_layers_apply_in_order_and_every_value_says_where_it_came_from() -> None:
    model = ModelSettings(temperature=0.6, top_p=0.95, context_length=4096)
    profile = ModelSettings(temperature=0.2, system_prompt="Be brief.", backend="gptqmodel")
    chat = ModelSettings(temperature=0.0)
    eff = effective_settings(model, profile, chat)
    assert (eff["temperature"].value, eff["temperature"].source) == (0.0, SettingSource.CHAT)
    assert (eff["system_prompt"].value, eff["system_prompt"].source) == ("Be brief.", SettingSource.PROFILE)
    assert (eff["backend"].value, eff["backend"].source) == ("gptqmodel", SettingSource.PROFILE)
    assert (eff["top_p"].value, eff["top_p"].source) == (0.95, SettingSource.MODEL)
    assert (eff["context_length"].value, eff["context_length"].source) == (4096, SettingSource.MODEL)
    assert (eff["top_k"].value, eff["top_k"].source) == (40, SettingSource.DEFAULT)
    assert (eff["seed"].value, eff["seed"].source) == (None, SettingSource.DEFAULT)
    assert eff.sampling() == Sampling(temperature=0.0, top_p=0.95, top_k=40, max_new_tokens=512)
    load = eff.load_settings()
    assert (load.context_length, load.cache_type, load.trust_remote_code) == (4096, CacheType.FP16, False)


def test_each_layer_alone() -> None:
    assert effective_settings().value("temperature") == APP_DEFAULTS.temperature
    for layer, source in (
        ("model", SettingSource.MODEL),
        ("profile", SettingSource.PROFILE),
        ("chat", SettingSource.CHAT),
    ):
        eff = effective_settings(**{layer: ModelSettings(max_new_tokens=64)})  # type: ignore[arg-type]
        assert (eff["max_new_tokens"].value, eff["max_new_tokens"].source) == (64, source)


def test_an_explicitly_empty_system_prompt_overrides_a_lower_layer() -> None:
    eff = effective_settings(
        profile=ModelSettings(system_prompt="You are a pirate."), chat=ModelSettings(system_prompt="")
    )
    assert (eff["system_prompt"].value, eff["system_prompt"].source) == ("", SettingSource.CHAT)


def test_model_layer_reads_generation_config_and_context() -> None:
    files = ModelFiles(
        Path("m"),
        generation_config={"temperature": 0.6, "top_p": 0.9, "top_k": "lots", "max_new_tokens": 256},
        context_length=8192,
    )
    layer = model_layer(files)
    assert (layer.temperature, layer.top_p, layer.top_k, layer.max_new_tokens) == (0.6, 0.9, None, 256)
    assert layer.context_length == 8192
    greedy = model_layer(ModelFiles(Path("m"), generation_config={"do_sample": False, "temperature": 0.9}))
    assert greedy.temperature == 0.0


def test_profile_save_load_update_and_memory(isolated_home: Path) -> None:
    store = ProfileStore()
    assert store.directory == isolated_home / "config" / "profiles"
    empty = store.load(REPO, BRANCH)
    assert empty.profile == Profile(REPO, BRANCH) and empty.warning is None
    settings = ModelSettings(
        backend="exllamav2",
        context_length=4096,
        cache_type="q4",
        gpu_split=(20.0, 24.0),
        template="Llama-2-chat",
        system_prompt="",
        temperature=0.3,
        top_p=0.8,
        top_k=20,
        min_p=0.05,
        repetition_penalty=1.1,
        max_new_tokens=200,
        seed=1234,
        extra_stop_strings=("</answer>",),
        trust_remote_code=True,
    )
    path = store.save(Profile(REPO, BRANCH, settings))
    assert path.parent == store.directory and path.name.startswith("TheBloke_Llama-2-7B-Chat-GPTQ__gptq-4bit")
    assert store.load(REPO, BRANCH).profile.settings == settings
    store.update(REPO, BRANCH, ModelSettings(temperature=0.9))
    loaded = store.load(REPO, BRANCH).profile
    assert loaded.settings.temperature == 0.9 and loaded.settings.seed == 1234
    store.record_memory(REPO, BRANCH, MeasuredMemory("gptqmodel", 123_456_789, 4096, 1.0))
    assert store.load(REPO, BRANCH).profile.measured == MeasuredMemory("gptqmodel", 123_456_789, 4096, 1.0)
    assert [p.name for p in store.directory.iterdir()] == [path.name]  # no temp files left behind


def test_each_repo_and_branch_has_its_own_file() -> None:
    store = ProfileStore()
    paths = {store.path_for("a/b", "main"), store.path_for("a/b", "x"), store.path_for("a/b_x", "main")}
    paths.add(store.path_for("a_b/x", "main"))
    assert len(paths) == 4


@pytest.mark.parametrize(
    "content", [b"{not json", b"[1, 2]", b'{"settings": 3}', b"", b'{"settings": {"top_k": "\xff\xfe"}}']
)
def test_a_corrupt_profile_is_set_aside_and_defaults_apply(content: bytes) -> None:
    store = ProfileStore()
    path = store.path_for(REPO, BRANCH)
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    loaded = store.load(REPO, BRANCH)
    assert loaded.profile == Profile(REPO, BRANCH)
    assert loaded.warning and "set aside" in loaded.warning and "defaults apply" in loaded.warning
    assert loaded.set_aside is not None and loaded.set_aside.read_bytes() == content
    assert not path.exists()
    assert store.load(REPO, BRANCH).warning is None  # told once; next time there is simply no profile
    store.update(REPO, BRANCH, ModelSettings(top_k=5))  # and saving works again
    assert store.load(REPO, BRANCH).profile.settings.top_k == 5


def test_bad_values_are_dropped_one_by_one_with_a_warning() -> None:
    store = ProfileStore()
    path = store.path_for(REPO, BRANCH)
    path.parent.mkdir(parents=True)
    settings = {"temperature": "hot", "top_p": 0.5, "backend": "llama.cpp", "colour": "blue", "seed": True}
    path.write_text(json.dumps({"version": 1, "settings": settings, "measured": {"bytes": "x"}}))
    loaded = store.load(REPO, BRANCH)
    assert loaded.profile.settings == ModelSettings(top_p=0.5)
    assert loaded.profile.measured is None
    assert loaded.warning is not None
    for word in ("temperature", "backend", "colour", "seed"):
        assert word in loaded.warning
    assert path.exists()  # the file itself is fine: nothing set aside


def test_settings_validation_table() -> None:
    ok, problems = settings_from_dict(
        {"gpu_split": [24, 24], "extra_stop_strings": ["###"], "cache_type": "q8", "context_length": 2048}
    )
    assert ok == ModelSettings(
        gpu_split=(24.0, 24.0), extra_stop_strings=("###",), cache_type="q8", context_length=2048
    )
    assert problems == []
    bad, problems = settings_from_dict(
        {"gpu_split": [], "cache_type": "q3", "context_length": -1, "min_p": 1.0}
    )
    assert bad == ModelSettings() and len(problems) == 4


def test_local_folders_get_a_stable_profile_key(tmp_path: Path) -> None:
    a = local_profile_key(tmp_path / "model")
    assert a == local_profile_key(tmp_path / "model")
    assert a != local_profile_key(tmp_path / "other" / "model")
    assert a[0] == "local" and a[1].startswith("model-")
