"""A model folder's own Python code never runs without the user's consent for that folder (issue 11.1).

The fixture is the real tiny Llama GPTQ model plus what a hostile repo adds: ``model_type: llama`` (a
type transformers knows) with an ``auto_map`` pointing at ``modeling_x.py``, whose import writes a
marker file. GPTQModel imports ``auto_map`` classes even with ``trust_remote_code=False``, so the only
safe place to stop is before the backend sees the folder.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from app.backends.base import LoadSettings
from app.backends.gptqmodel import GPTQModelRules
from app.backends.remote_code import ConsentStore, allow_remote_code, find_remote_code, remote_code_allowed
from app.errors import RemoteCodeConsentError
from tests.models.fixtures import TINY_MAIN

ROOT = Path(__file__).resolve().parents[1]
MODELING = """
import pathlib
pathlib.Path({marker!r}).write_text("imported")
from transformers import LlamaForCausalLM


class Model(LlamaForCausalLM):
    pass
"""


def make_remote_code_model(source: Path, folder: Path, marker: Path) -> Path:
    """A copy of ``source`` whose config maps AutoModelForCausalLM to a module that writes ``marker``."""
    shutil.copytree(source, folder)
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "llama"
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_x.Model"}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "modeling_x.py").write_text(MODELING.format(marker=str(marker)))
    return folder


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / "modeling_x-was-imported"


@pytest.fixture
def remote_model(tiny_models: dict[str, Path], tmp_path: Path, marker: Path) -> Path:
    return make_remote_code_model(tiny_models[TINY_MAIN], tmp_path / "remote-code-model", marker)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """``quantdesk ARGS`` in a fresh interpreter, with this test's QUANTDESK_HOME and HF_HOME."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_cli_refuses_remote_code_in_one_sentence_naming_the_flag(remote_model: Path, marker: Path) -> None:
    result = run_cli("chat", str(remote_model), "--prompt", "Hello")
    assert result.returncode == 1
    assert not marker.exists(), "modeling_x.py was imported without consent"
    assert result.stdout == ""
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1, result.stderr
    [sentence] = error_lines
    assert "--trust-remote-code" in sentence and "modeling_x.py" in sentence and str(remote_model) in sentence
    assert "Traceback" not in result.stderr


def test_backend_load_refuses_remote_code_even_for_a_known_model_type(
    remote_model: Path, marker: Path
) -> None:
    # The backend itself refuses too (a caller that skips the chat set-up), before GPTQModel sees it.
    with pytest.raises(RemoteCodeConsentError) as err:
        GPTQModelRules().load(remote_model, LoadSettings(device="cpu"))
    assert not marker.exists()
    assert "modeling_x.py" in err.value.user_message and str(remote_model) in err.value.user_message


def test_a_python_file_without_auto_map_also_needs_consent(
    tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    folder = tmp_path / "with-module"
    shutil.copytree(tiny_models[TINY_MAIN], folder)
    (folder / "tokenization_x.py").write_text("raise SystemExit('never imported')\n")
    code = find_remote_code(folder)
    assert code is not None and code.python_files == ("tokenization_x.py",)
    assert find_remote_code(tiny_models[TINY_MAIN]) is None  # the plain model ships none
    with pytest.raises(RemoteCodeConsentError):
        GPTQModelRules().load(folder, LoadSettings(device="cpu"))


def test_consent_is_per_folder_remembered_and_asked_again_when_the_code_changes(
    remote_model: Path, marker: Path, tmp_path: Path
) -> None:
    allowed = run_cli(
        "chat", str(remote_model), "--prompt", "Hello", "--max-new-tokens", "3", "--trust-remote-code"
    )
    assert allowed.returncode == 0, allowed.stderr
    assert marker.exists()  # the user allowed it: the model's code ran
    assert "remembered for this folder" in allowed.stderr
    assert remote_code_allowed(remote_model)  # later loads of this folder need no flag

    # Another copy of the same repo is another folder: no consent there.
    copy = shutil.copytree(remote_model, tmp_path / "another-copy")
    assert not remote_code_allowed(copy)
    with pytest.raises(RemoteCodeConsentError):
        GPTQModelRules().load(copy, LoadSettings(device="cpu"))

    # An update that changes the code: consent was for the old code, so it is asked again.
    marker.unlink()
    with (remote_model / "modeling_x.py").open("a") as fh:
        fh.write("\n# changed\n")
    assert not remote_code_allowed(remote_model)
    refused = run_cli("chat", str(remote_model), "--prompt", "Hello")
    assert refused.returncode == 1 and "--trust-remote-code" in refused.stderr
    assert not marker.exists()


def test_consent_store_sets_a_damaged_file_aside_and_grants_only_the_code_shown(
    remote_model: Path, isolated_home: Path
) -> None:
    store = ConsentStore()
    store.path.parent.mkdir(parents=True, exist_ok=True)
    store.path.write_bytes(b"\xff\xfe not json")
    assert not remote_code_allowed(remote_model, store)  # damaged: nothing is allowed, nothing crashes
    assert list(store.path.parent.glob("remote_code_consent.corrupt-*.json"))
    # A consent given for code the user saw earlier is not recorded once the code has changed.
    code = find_remote_code(remote_model)
    assert code is not None
    (remote_model / "modeling_x.py").write_text("# replaced after the dialog was shown\n")
    assert not allow_remote_code(remote_model, code.fingerprint, store)
    assert not remote_code_allowed(remote_model, store)
    assert allow_remote_code(remote_model, None, store) and remote_code_allowed(remote_model, store)
    store.revoke(remote_model)
    assert not remote_code_allowed(remote_model, store)
