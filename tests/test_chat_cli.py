"""`quantdesk chat` over a scripted model: one-shot, REPL, profiles, REPO[:BRANCH] resolution."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from app.chat.profiles import ProfileStore, local_profile_key
from app.chat.storage import ChatStore
from app.cli import main
from tests.chat_fakes import ScriptedModel


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "TheBloke_guanaco-7B-GPTQ"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"max_position_embeddings": 2048}))
    (folder / "generation_config.json").write_text(json.dumps({"temperature": 0.6}))
    return folder


@pytest.fixture
def fake_load(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Replace backend loading with a scripted model; records each load and the model it returned."""
    loads: list[dict[str, Any]] = []

    def load(files: Any, backend: str, settings: Any, progress: Any) -> ScriptedModel:
        progress(1.0, "Loaded")
        model = ScriptedModel(
            replies=[[" Paris", " is the capital."], ["Second."], ["Third."]], memory_bytes=4242
        )
        loads.append({"dir": files.model_dir, "backend": backend, "settings": settings, "model": model})
        return model

    monkeypatch.setattr("app.cli.chat.load_model", load)
    return loads


def test_one_shot_prints_only_the_reply(
    model_dir: Path, fake_load: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["chat", str(model_dir), "--prompt", "What is the capital of France?"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "Paris is the capital.\n"
    assert "Template: Guanaco (name rule)" in captured.err
    [load] = fake_load
    model: ScriptedModel = load["model"]
    assert load["backend"] == "auto" and load["settings"].context_length == 2048
    assert (
        model.tokenizer.spell(model.prompts[0]) == "### Human: What is the capital of France?\n### Assistant:"
    )
    assert model.samplings[0].temperature == 0.6  # from generation_config.json
    assert model.unloaded


def test_flags_apply_and_save_profile_stores_them(
    model_dir: Path, fake_load: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["chat", str(model_dir), "--prompt", "hi", "--template", "ChatML", "--system", "Be brief."]
    args += ["--temperature", "0", "--seed", "5", "--max-new-tokens", "33", "--backend", "gptqmodel"]
    assert main([*args, "--save-profile"]) == 0
    first: ScriptedModel = fake_load[0]["model"]
    assert first.tokenizer.spell(first.prompts[0]).startswith("<|im_start|>system\nBe brief.<|im_end|>")
    assert (first.samplings[0].temperature, first.samplings[0].seed) == (0.0, 5)
    assert "Saved these options" in capsys.readouterr().err
    repo, branch = local_profile_key(model_dir)
    profile = ProfileStore().load(repo, branch).profile
    assert (profile.settings.template, profile.settings.temperature, profile.settings.backend) == (
        "ChatML",
        0.0,
        "gptqmodel",
    )
    assert profile.measured is not None and profile.measured.bytes == 4242
    # The next run without flags gets the profile's settings.
    assert main(["chat", str(model_dir), "--prompt", "hi"]) == 0
    second: ScriptedModel = fake_load[1]["model"]
    assert fake_load[1]["backend"] == "gptqmodel"
    assert second.tokenizer.spell(second.prompts[0]).startswith("<|im_start|>system\nBe brief.")
    assert second.samplings[0].max_new_tokens <= 33
    assert "Template: ChatML (profile)" in capsys.readouterr().err


def test_a_corrupt_profile_warns_and_the_chat_goes_on(
    model_dir: Path, fake_load: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    path = ProfileStore().path_for(*local_profile_key(model_dir))
    path.parent.mkdir(parents=True)
    path.write_text("{{{")
    assert main(["chat", str(model_dir), "--prompt", "hi"]) == 0
    captured = capsys.readouterr()
    assert "warning: The saved settings" in captured.err and "set aside" in captured.err
    assert captured.out == "Paris is the capital.\n"


def test_repl_streams_saves_resets_and_exits(
    model_dir: Path,
    fake_load: list[dict[str, Any]],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("Capital?\n/save\nAnother?\n\n/reset\nThird?\n/exit\n"))
    assert main(["chat", str(model_dir)]) == 0
    captured = capsys.readouterr()
    assert captured.out.count("> ") == 7
    assert "Paris is the capital." in captured.out and "Second." in captured.out and "Third." in captured.out
    assert "/reset" in captured.err and "Saved as conversation" in captured.err
    with ChatStore() as store:
        [summary] = store.list()
        conv = store.load(summary.id)
    assert [m.content for m in conv.messages] == ["Capital?", "Paris is the capital.", "Another?", "Second."]
    assert conv.meta.template == "Guanaco" and conv.meta.backend == "fake"
    model: ScriptedModel = fake_load[0]["model"]
    assert model.tokenizer.spell(model.prompts[2]) == "### Human: Third?\n### Assistant:"  # after /reset


def test_save_with_a_damaged_chats_file_sets_it_aside_and_saves(
    model_dir: Path,
    fake_load: list[dict[str, Any]],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from app.chat.storage import default_db_path

    damaged = default_db_path()
    damaged.parent.mkdir(parents=True, exist_ok=True)
    damaged.write_bytes(b"this is not a database\n" * 100)
    monkeypatch.setattr("sys.stdin", io.StringIO("Capital?\n/save\n/exit\n"))
    assert main(["chat", str(model_dir)]) == 0
    captured = capsys.readouterr()
    assert "warning: The chat history file was damaged" in captured.err and "Saved as" in captured.err
    assert "Traceback" not in captured.err and "warning" not in captured.out
    [aside] = damaged.parent.glob("chats.sqlite3.corrupt-*[0-9]")
    assert aside.read_bytes() == b"this is not a database\n" * 100
    with ChatStore() as store:
        [summary] = store.list()
        assert [m.content for m in store.load(summary.id).active_path()] == [
            "Capital?",
            "Paris is the capital.",
        ]


def test_repl_ends_on_end_of_input(
    model_dir: Path, fake_load: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("Capital?\n"))
    assert main(["chat", str(model_dir)]) == 0


def test_repo_and_branch_resolve_to_the_downloaded_folder(
    tmp_path: Path, fake_load: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    from app.downloads.state import CompletionMarker, FolderState
    from app.downloads.target import default_target

    folder = default_target("TheBloke/guanaco-7B-GPTQ", "gptq-4bit-32g")
    folder.mkdir(parents=True)
    FolderState(folder).save_marker(
        CompletionMarker("TheBloke/guanaco-7B-GPTQ", "gptq-4bit-32g", "d" * 40, ())
    )
    assert main(["chat", "TheBloke/guanaco-7B-GPTQ:gptq-4bit-32g", "--prompt", "hi", "--save-profile"]) == 0
    assert fake_load[0]["dir"] == folder
    assert ProfileStore().load("TheBloke/guanaco-7B-GPTQ", "gptq-4bit-32g").profile.measured is not None
    capsys.readouterr()
    assert main(["chat", "TheBloke/guanaco-7B-GPTQ", "--prompt", "hi"]) == 1
    err = capsys.readouterr().err
    assert "TheBloke/guanaco-7B-GPTQ:main is not downloaded" in err and "quantdesk download" in err


def test_unknown_model_and_template_are_clear_errors(
    model_dir: Path, fake_load: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["chat", "not a repo!", "--prompt", "hi"]) == 1
    assert "neither a model folder nor a repo id" in capsys.readouterr().err
    assert main(["chat", str(model_dir), "--template", "Zephyr", "--prompt", "hi"]) == 1
    assert "no prompt template called 'Zephyr'" in capsys.readouterr().err
    assert fake_load == []  # nothing was loaded for a chat that cannot start


def test_the_chat_core_imports_no_torch_backend_or_qt() -> None:
    import subprocess
    import sys

    modules = (
        "cli.chat chat.budget chat.conversation chat.detection chat.engine chat.export chat.jinja_template "
        "chat.message chat.model_files chat.profiles chat.storage chat.storage_schema chat.templates"
    )
    code = (
        "import sys, json\n"
        + "".join(f"import app.{m}\n" for m in modules.split())
        + "print(json.dumps(sorted(m for m in ('torch', 'transformers', 'gptqmodel', 'exllamav2', 'PySide6')"
        " if m in sys.modules)))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(result.stdout) == []


LLAMA_CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 128,
    "intermediate_size": 384,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 512,
    "max_position_embeddings": 512,
}


def _gptq_folder(tmp_path: Path, bits: int) -> Path:
    folder = tmp_path / f"local-{bits}bit"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(LLAMA_CONFIG))
    (folder / "quantize_config.json").write_text(
        json.dumps({"bits": bits, "group_size": 32, "desc_act": True})
    )
    (folder / "model.safetensors").write_bytes(b"0" * 1000)
    return folder


def test_backend_selection_for_a_local_folder_uses_the_catalog_rules(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from app.backends.base import LoadSettings
    from app.backends.gptqmodel import GPTQModelRules
    from app.chat.model_files import local_branch_info, read_model_files
    from app.cli.chat import load_model
    from app.errors import BackendRefusedError

    loaded: list[Path] = []
    monkeypatch.setattr(
        GPTQModelRules, "load", lambda self, d, s, p=None, c=None: loaded.append(d) or "model"
    )
    files = read_model_files(_gptq_folder(tmp_path, 3))
    info = local_branch_info(files)
    assert info.is_gptq and info.quantization.bits == 3 and info.architecture is not None
    assert load_model(files, "auto", LoadSettings(), lambda f, m: None) == "model"
    assert loaded == [files.model_dir]
    assert "Backend: GPTQModel" in capsys.readouterr().err
    with pytest.raises(BackendRefusedError, match="ExLlamaV2"):
        load_model(files, "exllamav2", LoadSettings(), lambda f, m: None)  # 3-bit: refused with the reason
