"""Failures a user can meet end in one sentence, not a traceback (issue 11, items 7 and 8)."""

from __future__ import annotations

import errno
import shutil
import threading
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file

from app.backends.base import LoadSettings, Sampling
from app.backends.gptqmodel import GPTQModelRules
from app.cli import main
from app.errors import BackendError, ModelLoadError
from tests.hub_emulator import HubEmulator
from tests.models.fixtures import TINY_MAIN


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1, err
    assert "Traceback" not in err
    return errors[0]


# -- item 7: branches with a full disk under the cache --------------------------------------------------


def test_branches_prints_the_table_when_the_cache_cannot_be_written(
    hub: HubEmulator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def disk_full(path: Path, data: Any, **_: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    # The disk is the fake here; what is tested is that the catalog and the command carry on without it.
    monkeypatch.setattr("app.catalog.cache.write_json_atomic", disk_full)
    assert main(["branches", "TheBloke/TinyLlama-GPTQ"]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("TheBloke/TinyLlama-GPTQ: 8 branches")
    assert "note: The table of TheBloke/TinyLlama-GPTQ could not be cached" in captured.err
    assert "disk is full" in captured.err and "Traceback" not in captured.err


# -- item 7: a 5,000-character model id in chat ---------------------------------------------------------


@pytest.mark.parametrize("model", ["a" * 5000, "org/" + "a" * 5000, "/tmp/" + "a" * 5000])
def test_chat_with_an_absurdly_long_model_id_is_one_short_sentence(
    model: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["chat", model, "--prompt", "Hello"]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert len(line) < 300 and "…" in line


# -- item 7: a load that fails inside the backend --------------------------------------------------------


def broken_weights(source: Path, folder: Path) -> Path:
    """A copy of ``source`` whose act-order indices point past the scales (GPTQModel: IndexError)."""
    shutil.copytree(source, folder)
    weights = folder / "model.safetensors"
    tensors = load_file(weights)
    for name in [n for n in tensors if n.endswith(".g_idx")]:
        tensors[name] = torch.full_like(tensors[name], 100_000)
    save_file(tensors, weights, metadata={"format": "pt"})
    return folder


def test_broken_weights_fail_the_load_with_a_sentence_naming_model_and_backend(
    tiny_models: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = broken_weights(tiny_models[TINY_MAIN], tmp_path / "broken")
    with pytest.raises(ModelLoadError) as err:
        GPTQModelRules().load(broken, LoadSettings(device="cpu"))
    assert "GPTQModel failed to load the model in" in err.value.message and str(broken) in err.value.message
    assert "IndexError" in err.value.message and "Traceback" in err.value.detail  # kept for a bug report

    assert main(["chat", str(broken), "--prompt", "Hello"]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert "GPTQModel" in line and str(broken) in line


def test_a_failure_inside_generation_is_a_sentence_too(tiny_gptqmodel: Any) -> None:
    out_of_vocabulary = [10**9]  # the embedding lookup raises inside the library's forward pass
    with pytest.raises(BackendError) as err:
        list(tiny_gptqmodel.generate(out_of_vocabulary, Sampling(max_new_tokens=2), [], threading.Event()))
    assert "GPTQModel failed while generating with the model in" in err.value.message
    assert "IndexError" in err.value.message


# -- item 8: render --model that is not a model folder ---------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "expected"),
    [("missing", "is not there"), ("file", "is a file, not a model folder"), ("repo id", "is not there")],
)
def test_render_refuses_a_model_that_is_not_a_folder(
    kind: str, expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    messages = tmp_path / "messages.json"
    messages.write_text('[{"role": "user", "content": "Hello!"}]')
    model = {
        "missing": str(tmp_path / "nowhere"),
        "file": str(messages),
        "repo id": "TheBloke/Llama-2-7B-GPTQ",
    }
    assert main(["render", "--model", model[kind], "--messages", str(messages)]) == 1
    captured = capsys.readouterr()
    line = one_error_line(captured.err)
    assert expected in line and "--model" in line
    assert captured.out == ""
