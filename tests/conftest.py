"""Shared fixtures: an isolated QuantDesk home for every test, and the local Hub emulator."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures import RepoSpec, build_fixture_hub
from tests.fixtures.hub_search_repos import write_search_repos
from tests.hub_emulator import HubEmulator

# Tokens the emulator knows: one granted the gated repo, one valid but not granted.
GRANTED_TOKEN = "hf_test_granted_0123456789"
UNGRANTED_TOKEN = "hf_test_not_granted_0123456789"
EMULATOR_TOKENS = {GRANTED_TOKEN: ["TheBloke/Gated-GPTQ"], UNGRANTED_TOKEN: []}


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own QUANTDESK_HOME and HF_HOME, no token, no real keyring, no telemetry."""
    home = tmp_path / "quantdesk-home"
    monkeypatch.setenv("QUANTDESK_HOME", str(home))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.null.Keyring")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr("app.auth._session_token", None)  # a token kept in memory lives for one test
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # tests never see a real GPU, even on a GPU host
    return home


@pytest.fixture(scope="session")
def fixture_specs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, RepoSpec]]:
    """The standard fixture repos plus the search repos (mostly metadata-only), written once per session."""
    root = tmp_path_factory.mktemp("hub-root")
    specs = build_fixture_hub(root)
    write_search_repos(root)
    return root, specs


@pytest.fixture(scope="session")
def _session_hub(fixture_specs: tuple[Path, dict[str, RepoSpec]]) -> Iterator[HubEmulator]:
    with HubEmulator(fixture_specs[0], tokens=EMULATOR_TOKENS) as emulator:
        yield emulator


@pytest.fixture
def hub(_session_hub: HubEmulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[HubEmulator]:
    """The shared, read-only emulator with faults and request log reset, and HF_ENDPOINT set to it."""
    _session_hub.reset()
    monkeypatch.setenv("HF_ENDPOINT", _session_hub.endpoint)
    yield _session_hub
    _session_hub.reset()


@pytest.fixture
def private_hub(
    fixture_specs: tuple[Path, dict[str, RepoSpec]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[HubEmulator]:
    """An emulator over a private copy of the fixture repos that a test may modify."""
    root = tmp_path / "private-hub"
    shutil.copytree(fixture_specs[0], root)
    with HubEmulator(root, tokens=EMULATOR_TOKENS) as emulator:
        monkeypatch.setenv("HF_ENDPOINT", emulator.endpoint)
        yield emulator


# Real GPTQ models (tiny Llama branches, SmolLM2-135M), built at test time and cached by their inputs.
from tests.models.fixtures import smollm2_dir, tiny_gptqmodel, tiny_models  # noqa: E402

__all__ = ["smollm2_dir", "tiny_gptqmodel", "tiny_models"]

# Remote engines: a real llama.cpp OpenAI-compatible server (SmolLM2 GGUF) and a scripted HTTP server.
from tests.remote_fixtures import disposable_llama_server, llama_server, scripted_server  # noqa: E402

__all__ += ["disposable_llama_server", "llama_server", "scripted_server"]


@pytest.fixture(autouse=True)
def _hub_cache_follows_hf_home(monkeypatch: pytest.MonkeyPatch) -> None:
    """Importing gptqmodel imports tokenicer, which sets HF_HUB_CACHE (and HF_HOME) for the whole process
    (to /tmp/tokenicer_hf_home/hub when imported at collection): every test would then share one HF cache
    across tests and runs. Drop it so each test's HF_HOME (isolated_home) decides the cache."""
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)


@pytest.fixture
def ctrl_c_reaches_children() -> Iterator[None]:
    """Child processes started in the test get Ctrl-C (SIGINT) even when the test run itself ignores it:
    a shell starts a background job (``make test &``) with SIGINT ignored, and an ignored signal stays
    ignored across exec, so a CLI under test would never see the Ctrl-C the test sends it."""
    import signal

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # reset to default on exec
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
